//! Probes of `scripts/bench` that need precise timing or raw sockets.
//!
//! Usage:
//!   bench_probe startup BINARY STATE_DIR RUNS IDLE_MS EVICT
//!       RUNS times: (when EVICT is a file, not `-`, first sync it and drop
//!       it from the page cache with `dd iflag=nocache`, for a cold start)
//!       spawn `BINARY serve --listen 127.0.0.1:0 --ws-listen
//!       127.0.0.1:0 --state-dir STATE_DIR` (stderr discarded), time from
//!       just before the spawn to the ready line
//!       `baa-conductor listening on http://…` on its stdout, let it idle
//!       IDLE_MS, read VmRSS and VmHWM from /proc/PID/status, stop it with
//!       SIGTERM and check it exits 0. Prints `key=value` lines: ready_ms,
//!       rss_kb, hwm_kb (one value per run, comma-separated), median_ready_ms,
//!       max_ready_ms, median_rss_kb.
//!   bench_probe strand HOST:PORT PATH CONNS WAIT_MS
//!       Opens CONNS keep-alive connections in one burst, sends one
//!       `GET PATH` on each and counts the connections answered within
//!       WAIT_MS. A server whose pool strands connections of a burst (the
//!       tiny_http 0.12 hazard) leaves some unanswered while the others stay
//!       open. Prints conns, answered, stranded, max_answer_ms (`key=value`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_probe: {msg}");
    std::process::exit(1)
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| die(e));
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| die(format!("no {key} in /proc/{pid}/status")))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

/// Writes FILE's dirty pages out and drops all its pages from the page cache.
fn evict(file: &str) {
    let synced = Command::new("sync").arg(file).status();
    let dropped =
        Command::new("dd").args([&format!("if={file}"), "iflag=nocache", "count=0", "status=none"]).status();
    if !matches!((synced, dropped), (Ok(a), Ok(b)) if a.success() && b.success()) {
        die(format!("could not evict {file} from the page cache"));
    }
}

fn list(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(",")
}

fn startup(binary: &str, state_dir: &str, runs: usize, idle_ms: u64, evict_file: Option<&str>) {
    let (mut ready, mut rss, mut hwm) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        if let Some(file) = evict_file {
            evict(file);
        }
        let t0 = Instant::now();
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ws-listen",
                "127.0.0.1:0",
                "--state-dir",
                state_dir,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(format!("cannot spawn {binary}: {e}")));
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let status = child.wait();
                die(format!("daemon exited before its ready line: {status:?}"));
            }
            if line.starts_with("baa-conductor listening on http://") {
                break;
            }
        }
        ready.push(t0.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(idle_ms));
        rss.push(proc_status_kb(child.id(), "VmRSS:") as f64);
        hwm.push(proc_status_kb(child.id(), "VmHWM:") as f64);
        let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !matches!(killed, Ok(s) if s.success()) {
            let _ = child.kill();
            die("could not send SIGTERM to the daemon");
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => die(format!("daemon exited with {status} after SIGTERM")),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                _ => {
                    let _ = child.kill();
                    die("daemon did not stop within 15 s of SIGTERM");
                }
            }
        }
    }
    let max_ready = ready.iter().copied().fold(0.0, f64::max);
    println!("ready_ms={}\nrss_kb={}\nhwm_kb={}", list(&ready), list(&rss), list(&hwm));
    println!(
        "median_ready_ms={:.1}\nmax_ready_ms={max_ready:.1}\nmedian_rss_kb={:.0}",
        median(&ready),
        median(&rss)
    );
}

/// Reads one response head plus Content-Length body; true when complete.
fn one_response(stream: TcpStream) -> bool {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let mut length = 0usize;
    let mut first = true;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        if first {
            if !line.starts_with("HTTP/1.1 ") {
                return false;
            }
            first = false;
            continue;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).is_ok()
}

fn strand(addr: &str, path: &str, conns: usize, wait_ms: u64) {
    // The burst: every connection is opened before any request is sent, the
    // way wrk opens its connections at start.
    let streams: Vec<TcpStream> = (0..conns)
        .map(|_| TcpStream::connect(addr).unwrap_or_else(|e| die(format!("connect {addr}: {e}"))))
        .collect();
    let t0 = Instant::now();
    let handles: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(Duration::from_millis(wait_ms))).ok();
            s.write_all(request.as_bytes()).unwrap_or_else(|e| die(e));
            std::thread::spawn(move || {
                let ok = one_response(s.try_clone().expect("clone"));
                // Keep the connection open (keep-alive, idle) until every
                // thread is done, so a served connection keeps its worker.
                (ok, t0.elapsed(), s)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("reader thread")).collect();
    let answered = results.iter().filter(|(ok, _, _)| *ok).count();
    let max_ms =
        results.iter().filter(|(ok, _, _)| *ok).map(|(_, t, _)| t.as_secs_f64() * 1000.0).fold(0.0, f64::max);
    println!("conns={conns}\nanswered={answered}\nstranded={}\nmax_answer_ms={max_ms:.1}", conns - answered);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| die(format!("not a number: {s:?}")));
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["startup", binary, dir, runs, idle, evict] => {
            startup(binary, dir, num(runs) as usize, num(idle), Some(evict).filter(|f| *f != "-"))
        }
        ["strand", addr, path, conns, wait] => strand(addr, path, num(conns) as usize, num(wait)),
        _ => die("usage: bench_probe startup BINARY STATE_DIR RUNS IDLE_MS EVICT|- | strand HOST:PORT PATH CONNS WAIT_MS"),
    }
}
