//! `e2e` and `e2e-ws`: messages into the daemon (over HTTP, or through the
//! simulator's WebSocket), then the database polled until their jobs are done.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use serde_json::json;

use super::{die, http1, message_text, now_ms, page_url};

/// The message of seeded conversation `i`, as `POST /v1/messages` or
/// `browser.final_message` carry it (`client_id` only over HTTP: over the
/// WebSocket the connection names the client).
fn e2e_body(run: &str, i: u64, client: Option<&str>) -> String {
    let remote = format!("{run}-conv-{i:06}");
    let mut body = json!({"platform": "chatgpt", "conversation_id": remote, "message_id": format!("{run}-msg-{i:06}"),
           "role": "assistant", "text": message_text(run, i), "page_url": page_url(&remote),
           "page_title": format!("Bench conversation {i}"), "tab_id": i + 1});
    if let Some(client) = client {
        body["client_id"] = client.into();
    }
    body.to_string()
}

/// What the poller saw: (jobs, done, failed, largest finished_at,
/// incomplete, done once a second).
type Polled = (i64, i64, i64, Option<i64>, bool, Vec<String>);

/// Polls DB from `t0`, once every 50 ms, until every job of the run is
/// finished (or TIMEOUT, or nothing moved for 15 s); records the number
/// done once a second.
fn spawn_poller(db: &str, run: &str, n: u64, t0: Instant, timeout: u64) -> std::thread::JoinHandle<Polled> {
    let reader = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| die(e));
    let (lo, hi) = (format!("{run}-msg-"), format!("{run}-msg."));
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let mut last_progress = (Instant::now(), -1i64);
        let mut timeline = Vec::new();
        let mut next_tick = t0 + Duration::from_secs(1);
        loop {
            let row: (i64, i64, i64, Option<i64>) = reader
                .query_row(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'done'), COUNT(*) FILTER (WHERE status = 'failed'),
                            MAX(finished_at)
                     FROM renewal_jobs WHERE message_id >= ?1 AND message_id < ?2",
                    params![lo, hi],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap_or_else(|e| die(e));
            let (jobs, done, failed, max_finished) = row;
            while Instant::now() >= next_tick {
                timeline.push(done.to_string());
                next_tick += Duration::from_secs(1);
            }
            if done + failed >= n as i64 {
                return (jobs, done, failed, max_finished, false, timeline);
            }
            if done + failed + jobs != last_progress.1 {
                last_progress = (Instant::now(), done + failed + jobs);
            }
            if Instant::now() >= deadline || last_progress.0.elapsed() > Duration::from_secs(15) {
                return (jobs, done, failed, max_finished, true, timeline);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Prints the outcome of an end-to-end run; `t0_wall` is the wall clock
/// just before the first message left.
fn e2e_report(db: &str, run: &str, polled: Polled, t0_wall: i64) {
    let (jobs, done, failed, max_finished, incomplete, timeline) = polled;
    if incomplete {
        println!("incomplete=yes");
    }
    let secs = max_finished.map_or(f64::NAN, |m| (m - t0_wall) as f64 / 1000.0);
    println!("jobs={jobs}");
    println!("done={done}");
    println!("failed={failed}");
    println!("secs={secs:.3}");
    println!("rate={:.0}", done as f64 / secs);
    println!("done_per_sec_cumulative={}", timeline.join(","));
    let reader = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| die(e));
    let first_last: (Option<i64>, Option<i64>) = reader
        .query_row(
            "SELECT MIN(created_at), MAX(created_at) FROM renewal_jobs WHERE message_id >= ?1 AND message_id < ?2",
            params![format!("{run}-msg-"), format!("{run}-msg.")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| die(e));
    if let (Some(a), Some(b)) = first_last {
        println!("first_job_created_s={:.3}", (a - t0_wall) as f64 / 1000.0);
        println!("last_job_created_s={:.3}", (b - t0_wall) as f64 / 1000.0);
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn e2e(base: &str, db: &str, n: u64, conns: usize, run: &str, client: &str, timeout: u64) {
    let addr = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/').to_string();
    // Bodies built before the clock starts.
    let bodies: Vec<String> = (0..n).map(|i| e2e_body(run, i, Some(client))).collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(parking_lot::Mutex::new(None::<String>));
    let t0_wall = now_ms();
    let t0 = Instant::now();
    let poller = spawn_poller(db, run, n, t0, timeout);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (bodies, next, errors, first_error, addr) =
                (bodies.clone(), next.clone(), errors.clone(), first_error.clone(), addr.clone());
            std::thread::spawn(move || {
                let sock = addr.parse().unwrap_or_else(|e| die(format!("bad address {addr}: {e}")));
                let mut client = http1::Client::new(sock, Duration::from_secs(30));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= bodies.len() {
                        break;
                    }
                    match client.call("POST", "/v1/messages", Some(&bodies[i])) {
                        Ok((200, _)) => {}
                        other => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            let shown = match other {
                                Ok((status, body)) => {
                                    format!("HTTP {status} {}", String::from_utf8_lossy(&body))
                                }
                                Err(e) => e,
                            };
                            first_error.lock().get_or_insert(shown);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("ingest thread");
    }
    let ingest_secs = t0.elapsed().as_secs_f64();
    println!("ingest_secs={ingest_secs:.3}");
    println!("ingest_rate={:.0}", n as f64 / ingest_secs);
    println!("ingest_errors={}", errors.load(Ordering::Relaxed));
    println!("ingest_first_error={}", first_error.lock().clone().unwrap_or_else(|| "-".into()));
    e2e_report(db, run, poller.join().expect("poller thread"), t0_wall);
}

/// The same run with the messages coming the way a plugin reports them:
/// the simulator (the only client, which also answers the deliveries)
/// replays them over its WebSocket with `--messages-file`. The clock starts
/// just before the simulator is spawned, so its start-up and handshake
/// count against us. Stops the simulator with SIGTERM at the end and
/// prints its summary lines.
#[allow(clippy::too_many_arguments)]
pub(super) fn e2e_ws(sim: &str, ws_url: &str, db: &str, n: u64, run: &str, client: &str, timeout: u64) {
    let file = std::path::Path::new(db).with_file_name(format!("{run}-messages.jsonl"));
    let lines: String = (0..n).map(|i| e2e_body(run, i, None) + "\n").collect();
    std::fs::write(&file, lines).unwrap_or_else(|e| die(e));
    let t0_wall = now_ms();
    let t0 = Instant::now();
    let poller = spawn_poller(db, run, n, t0, timeout);
    let mut child = Command::new(sim)
        .args([
            "--url",
            ws_url,
            "--client-id",
            client,
            "--platform",
            "chatgpt",
            "--mode",
            "succeed",
            "--quiet",
        ])
        .arg("--messages-file")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(format!("cannot start {sim}: {e}")));
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut fed = None;
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("messages-file:") {
                fed = Some(t0.elapsed().as_secs_f64());
            }
            lines.push(line);
        }
        (fed, lines)
    });
    let polled = poller.join().expect("poller thread");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let (fed, lines) = reader.join().expect("sim reader");
    match fed {
        Some(secs) => {
            println!("ingest_secs={secs:.3}");
            println!("ingest_rate={:.0}", n as f64 / secs);
        }
        None => println!("ingest_secs=incomplete"),
    }
    for line in lines.iter().filter(|l| l.starts_with("messages-file:") || l.starts_with("summary:")) {
        let key = if line.starts_with("summary:") { "sim_summary" } else { "sim_fed" };
        println!("{key}={}", line.split_once(": ").map_or(line.as_str(), |(_, v)| v));
    }
    let _ = std::fs::remove_file(&file);
    e2e_report(db, run, polled, t0_wall);
}
