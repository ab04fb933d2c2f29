//! Load generator of `scripts/bench_bridge` and `scripts/bench_policy`:
//! request/answer round trips through the daemon (HTTP → hub → plugin
//! simulator → HTTP answer) and, as the baseline measured in the same run,
//! the same round trip straight over a WebSocket to a simulator.
//!
//! Usage:
//!   bench_relay http BASE_URL PATH BODY CONNS PACE SECS
//!       CONNS threads, each with its own keep-alive connection to BASE_URL,
//!       send `POST PATH` with the JSON BODY (`GET` when BODY is `-`) and
//!       read the answer, which must be a 200.
//!   bench_relay direct SIM_BIN KIND CONNS PACE SECS [SIM_ARGS...]
//!       Listens on 127.0.0.1:0 as a minimal bridge, starts SIM_BIN
//!       (`baa-plugin-sim --url ws://127.0.0.1:PORT/ws/browser SIM_ARGS...`),
//!       answers its hello with hello_ack, then CONNS caller threads send
//!       `KIND` frames (`action` or `api_request`, built like the daemon
//!       builds them) over that one socket and wait for the answer with the
//!       same request_id (one reader thread routes answers to callers). This
//!       is the plugin round trip without HTTP, the hub, the policy or the
//!       daemon's writer thread.
//!
//! PACE:
//!   closed               each thread sends its next request as soon as the
//!                        previous answer is in (closed loop);
//!   rate:R               open loop at R requests/s in total: request i is
//!                        scheduled at start + i/R and taken by the next free
//!                        thread, which sleeps until then;
//!   ladder:R1,R2,...     one open-loop run of SECS per rate, in order; a
//!                        step not sustained is run once more, and two
//!                        steps in a row not sustained end the ladder.
//!
//! A rate is *sustained* when at least 97% of the scheduled requests were
//! answered within the run (+1 s grace), without errors, and the p99 of the
//! latency counted from each request's *scheduled* time (so a server that
//! falls behind is charged for the queue it causes: no coordinated omission)
//! is at most 10 ms.
//!
//! Output: `key=value` lines. Latencies are in ms, measured per request
//! from the moment its bytes are written to the moment the whole answer is
//! read (`p50_ms`, `p99_ms`, ...); `sched_p99_ms` counts from the scheduled
//! time instead; `lag_p99_ms` is how late requests left (client sleep
//! overshoot, or every connection busy). `per_sec` = answers per second of
//! the run. A 0.5 s closed-loop warm-up precedes the first measured run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const SUSTAINED_SHARE: f64 = 0.97;
const SUSTAINED_P99_MS: f64 = 10.0;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_relay: {msg}");
    std::process::exit(1)
}

// ---------------------------------------------------------------- load loop

#[derive(Clone, Copy, Debug)]
enum Pace {
    Closed,
    Rate(f64),
}

/// One caller's way of making one round trip.
trait Caller: Send {
    fn call(&mut self) -> Result<(), String>;
}

#[derive(Default)]
struct Sample {
    /// Microseconds from write to answer.
    service: Vec<u64>,
    /// Microseconds from the scheduled time to the answer (open loop only).
    sched: Vec<u64>,
    /// Microseconds the send left after its scheduled time.
    lag: Vec<u64>,
    /// Completion offsets from the start, ms.
    done_at_ms: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

struct RunResult {
    pace: Pace,
    secs: f64,
    ok: u64,
    errors: u64,
    scheduled: u64,
    service: Vec<u64>,
    sched: Vec<u64>,
    lag: Vec<u64>,
    per_sec: Vec<u64>,
    first_error: Option<String>,
}

fn run_load(callers: &mut [Box<dyn Caller>], pace: Pace, secs: f64) -> RunResult {
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(secs);
    let hard_end = end + Duration::from_secs(1);
    let tickets = Arc::new(AtomicU64::new(0));
    let samples: Vec<Sample> = std::thread::scope(|s| {
        let handles: Vec<_> = callers
            .iter_mut()
            .map(|caller| {
                let tickets = tickets.clone();
                s.spawn(move || {
                    let mut sample = Sample::default();
                    loop {
                        let scheduled = match pace {
                            Pace::Closed => {
                                let now = Instant::now();
                                if now < start {
                                    std::thread::sleep(start - now);
                                }
                                if Instant::now() >= end {
                                    break;
                                }
                                None
                            }
                            Pace::Rate(r) => {
                                let i = tickets.fetch_add(1, Ordering::Relaxed);
                                let at = start + Duration::from_secs_f64(i as f64 / r);
                                if at >= end {
                                    break;
                                }
                                let now = Instant::now();
                                if at > now {
                                    std::thread::sleep(at - now);
                                }
                                Some(at)
                            }
                        };
                        if Instant::now() >= hard_end {
                            // Hopelessly behind: the rest counts as not answered.
                            break;
                        }
                        let t0 = Instant::now();
                        let result = caller.call();
                        let t1 = Instant::now();
                        match result {
                            Ok(()) => {
                                sample.service.push((t1 - t0).as_micros() as u64);
                                if let Some(at) = scheduled {
                                    sample.sched.push((t1 - at).as_micros() as u64);
                                    sample.lag.push(t0.saturating_duration_since(at).as_micros() as u64);
                                }
                                sample
                                    .done_at_ms
                                    .push(t1.saturating_duration_since(start).as_millis() as u64);
                            }
                            Err(e) => {
                                sample.errors += 1;
                                if sample.first_error.is_none() {
                                    sample.first_error = Some(e);
                                }
                                // A broken connection would spin: pause a little.
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    sample
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("caller thread panicked")).collect()
    });
    let scheduled = match pace {
        Pace::Rate(r) => (secs * r).ceil() as u64,
        Pace::Closed => 0,
    };
    let mut result = RunResult {
        pace,
        secs,
        ok: 0,
        errors: 0,
        scheduled,
        service: Vec::new(),
        sched: Vec::new(),
        lag: Vec::new(),
        per_sec: vec![0; secs.ceil() as usize + 1],
        first_error: None,
    };
    for s in samples {
        result.ok += s.service.len() as u64;
        result.errors += s.errors;
        result.service.extend(s.service);
        result.sched.extend(s.sched);
        result.lag.extend(s.lag);
        for ms in s.done_at_ms {
            let i = ((ms / 1000) as usize).min(result.per_sec.len() - 1);
            result.per_sec[i] += 1;
        }
        if result.first_error.is_none() {
            result.first_error = s.first_error;
        }
    }
    result.service.sort_unstable();
    result.sched.sort_unstable();
    result.lag.sort_unstable();
    result
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

impl RunResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.secs
    }

    fn sustained(&self) -> bool {
        match self.pace {
            Pace::Closed => true,
            Pace::Rate(_) => {
                self.errors == 0
                    && self.ok as f64 >= SUSTAINED_SHARE * self.scheduled as f64
                    && pct(&self.sched, 99.0) <= SUSTAINED_P99_MS
            }
        }
    }

    fn print(&self, prefix: &str) {
        let p = |k: &str, v: String| println!("{prefix}{k}={v}");
        let offered = match self.pace {
            Pace::Closed => "closed".to_string(),
            Pace::Rate(r) => format!("{r}"),
        };
        p("offered", offered);
        p("ok", self.ok.to_string());
        p("errors", self.errors.to_string());
        p("secs", format!("{:.2}", self.secs));
        p("rate", format!("{:.0}", self.rate()));
        for (k, q) in [("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0), ("p999_ms", 99.9)] {
            p(k, format!("{:.3}", pct(&self.service, q)));
        }
        p("max_ms", format!("{:.3}", self.service.last().map_or(f64::NAN, |m| *m as f64 / 1000.0)));
        if matches!(self.pace, Pace::Rate(_)) {
            p("sched_p50_ms", format!("{:.3}", pct(&self.sched, 50.0)));
            p("sched_p99_ms", format!("{:.3}", pct(&self.sched, 99.0)));
            p("lag_p99_ms", format!("{:.3}", pct(&self.lag, 99.0)));
            p("sustained", if self.sustained() { "yes" } else { "no" }.to_string());
        }
        let per_sec: Vec<String> = self.per_sec.iter().map(u64::to_string).collect();
        p("per_sec", per_sec.join(","));
        p("first_error", self.first_error.clone().unwrap_or_else(|| "-".into()).replace('\n', " "));
    }
}

fn parse_pace(s: &str) -> Vec<Pace> {
    if s == "closed" {
        return vec![Pace::Closed];
    }
    if let Some(r) = s.strip_prefix("rate:") {
        return vec![Pace::Rate(r.parse().unwrap_or_else(|_| die(format!("bad rate {r}"))))];
    }
    if let Some(list) = s.strip_prefix("ladder:") {
        return list
            .split(',')
            .map(|r| Pace::Rate(r.parse().unwrap_or_else(|_| die(format!("bad rate {r}")))))
            .collect();
    }
    die(format!("bad PACE {s}: closed | rate:R | ladder:R1,R2,..."))
}

/// Warm-up, then each pace in turn; a ladder stops after its second
/// unsustained step and reports the highest sustained rate.
fn run_paces(callers: &mut [Box<dyn Caller>], paces: &[Pace], secs: f64) {
    let _ = run_load(callers, Pace::Closed, 0.5);
    if paces.len() == 1 {
        run_load(callers, paces[0], secs).print("");
        return;
    }
    let mut best: Option<(f64, f64)> = None;
    let mut misses = 0;
    for (i, pace) in paces.iter().enumerate() {
        // A step that misses is run once more (a burst of other load on the
        // machine should not end the ladder); two missed steps in a row end it.
        let mut r = run_load(callers, *pace, secs);
        if !r.sustained() {
            std::thread::sleep(Duration::from_millis(300));
            r.print(&format!("step{i}.first_try."));
            r = run_load(callers, *pace, secs);
        }
        r.print(&format!("step{i}."));
        if let Pace::Rate(rate) = pace {
            if r.sustained() {
                misses = 0;
                if best.is_none_or(|(b, _)| *rate > b) {
                    best = Some((*rate, pct(&r.service, 99.0)));
                }
            } else {
                misses += 1;
                if misses >= 2 {
                    break;
                }
            }
        }
        // Let queues drain between steps.
        std::thread::sleep(Duration::from_millis(300));
    }
    match best {
        Some((rate, p99)) => {
            println!("max_sustained={rate}");
            println!("max_sustained_p99_ms={p99:.3}");
        }
        None => println!("max_sustained=0"),
    }
}

// ---------------------------------------------------------------- HTTP

struct HttpCaller {
    addr: String,
    request: Vec<u8>,
    conn: Option<BufReader<TcpStream>>,
    body: Vec<u8>,
}

impl HttpCaller {
    fn new(base: &str, path: &str, body: &str) -> HttpCaller {
        let addr = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/').to_string();
        let request = if body == "-" {
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
        } else {
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        HttpCaller { addr, request, conn: None, body: Vec::with_capacity(4096) }
    }

    fn connect(&mut self) -> Result<&mut BufReader<TcpStream>, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(ANSWER_TIMEOUT)).ok();
            self.conn = Some(BufReader::with_capacity(16 * 1024, s));
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    fn round_trip(&mut self) -> Result<(u16, bool), String> {
        let request = std::mem::take(&mut self.request);
        let mut body = std::mem::take(&mut self.body);
        let result = (|| {
            let conn = self.connect()?;
            conn.get_mut().write_all(&request).map_err(|e| format!("write: {e}"))?;
            read_response(conn, &mut body)
        })();
        self.request = request;
        self.body = body;
        result
    }
}

/// Reads one response; returns its status and whether the server closes.
fn read_response(conn: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Result<(u16, bool), String> {
    let mut line = String::new();
    let mut status = 0u16;
    let mut length: Option<usize> = None;
    let mut close = false;
    let mut first = true;
    loop {
        line.clear();
        let n = conn.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        let l = line.trim_end();
        if first {
            status =
                l.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {l:?}"))?;
            first = false;
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                length = v.trim().parse().ok();
            } else if k == "connection" && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let length = length.ok_or("response without Content-Length")?;
    body.resize(length, 0);
    conn.read_exact(body).map_err(|e| format!("read body: {e}"))?;
    Ok((status, close))
}

impl Caller for HttpCaller {
    fn call(&mut self) -> Result<(), String> {
        match self.round_trip() {
            Ok((200, close)) => {
                if close {
                    self.conn = None;
                }
                Ok(())
            }
            Ok((status, _)) => {
                let text = String::from_utf8_lossy(&self.body).chars().take(300).collect::<String>();
                Err(format!("HTTP {status}: {text}"))
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

// ---------------------------------------------------------------- direct WS

/// The bench's side of one simulator connection.
struct Direct {
    /// Clone of the socket used only for writing whole frames.
    writer: Mutex<TcpStream>,
    pending: Mutex<HashMap<String, Sender<Value>>>,
    next_id: AtomicU64,
}

struct DirectCaller {
    conn: Arc<Direct>,
    kind: String,
    tx: Sender<Value>,
    rx: Receiver<Value>,
    buf: Vec<u8>,
}

impl Caller for DirectCaller {
    fn call(&mut self) -> Result<(), String> {
        let n = self.conn.next_id.fetch_add(1, Ordering::Relaxed);
        // Built the way the daemon builds its frames: json! then to_string.
        let (request_id, frame) = if self.kind == "action" {
            let id = format!("act_{n:016x}");
            let f = json!({ "type": "action", "request_id": id, "action": "bench_noop", "platform": Value::Null,
                            "tab_id": Value::Null, "payload": {} });
            (id, f)
        } else {
            let id = format!("ar_{n:016x}");
            let f = json!({ "type": "api_request", "request_id": id, "platform": "chatgpt", "method": "GET",
                            "path": "/api/bench", "headers": {}, "body": Value::Null, "stream": false,
                            "timeout_ms": 10000 });
            (id, f)
        };
        self.conn.pending.lock().insert(request_id.clone(), self.tx.clone());
        self.buf.clear();
        Frame::message(frame.to_string(), OpCode::Data(Data::Text), true)
            .format(&mut self.buf)
            .map_err(|e| e.to_string())?;
        self.conn.writer.lock().write_all(&self.buf).map_err(|e| format!("write: {e}"))?;
        match self.rx.recv_timeout(ANSWER_TIMEOUT) {
            Ok(answer) => {
                let good = match self.kind.as_str() {
                    "action" => answer["type"] == "action_result" && answer["failed"] == false,
                    _ => answer["type"] == "api_response" && answer["status"] == 200,
                };
                if good {
                    Ok(())
                } else {
                    Err(format!("unexpected answer {answer}"))
                }
            }
            Err(_) => {
                self.conn.pending.lock().remove(&request_id);
                Err("no answer within 10 s".into())
            }
        }
    }
}

struct SimGuard(Child);

impl Drop for SimGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn direct(sim_bin: &str, kind: &str, conns: usize, paces: &[Pace], secs: f64, sim_args: &[String]) {
    if kind != "action" && kind != "api_request" {
        die("KIND must be action or api_request");
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| die(e));
    let port = listener.local_addr().unwrap_or_else(|e| die(e)).port();
    let child = Command::new(sim_bin)
        .arg("--url")
        .arg(format!("ws://127.0.0.1:{port}/ws/browser"))
        .args(sim_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(format!("cannot start {sim_bin}: {e}")));
    let _guard = SimGuard(child);
    listener.set_nonblocking(false).ok();
    let (tcp, _) = accept_within(&listener, Duration::from_secs(10));
    tcp.set_nodelay(true).ok();
    let mut ws = tungstenite::accept(tcp.try_clone().unwrap_or_else(|e| die(e)))
        .unwrap_or_else(|e| die(format!("handshake: {e}")));
    // hello, then hello_ack like the daemon's.
    match ws.read() {
        Ok(Message::Text(t)) if t.contains("\"hello\"") => {}
        other => die(format!("expected hello from the simulator, got {other:?}")),
    }
    let ack = json!({"type":"hello_ack","connection_id":"conn_bench","protocol_version":1,"server_time":0,"heartbeat_ms":15000});
    ws.send(Message::text(ack.to_string())).unwrap_or_else(|e| die(e));
    let conn = Arc::new(Direct {
        writer: Mutex::new(tcp),
        pending: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
    });
    {
        let conn = conn.clone();
        std::thread::Builder::new()
            .name("direct-read".into())
            .spawn(move || loop {
                match ws.read() {
                    Ok(Message::Text(text)) => {
                        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                        let Some(id) = v.get("request_id").and_then(Value::as_str) else { continue };
                        let tx = conn.pending.lock().remove(id);
                        if let Some(tx) = tx {
                            let _ = tx.send(v);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            })
            .unwrap_or_else(|e| die(e));
    }
    // Let the simulator send its announcements (login_state) first.
    std::thread::sleep(Duration::from_millis(100));
    let mut callers: Vec<Box<dyn Caller>> = (0..conns)
        .map(|_| {
            let (tx, rx) = bounded(1);
            Box::new(DirectCaller {
                conn: conn.clone(),
                kind: kind.to_string(),
                tx,
                rx,
                buf: Vec::with_capacity(512),
            }) as Box<dyn Caller>
        })
        .collect();
    run_paces(&mut callers, paces, secs);
}

fn accept_within(listener: &TcpListener, limit: Duration) -> (TcpStream, std::net::SocketAddr) {
    listener.set_nonblocking(true).ok();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false).ok();
                return (s, a);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => die(format!("the simulator did not connect: {e}")),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| die("missing arguments (see the header of examples/bench_relay.rs)"))
    };
    let num = |i: usize| -> f64 { arg(i).parse().unwrap_or_else(|_| die(format!("bad number {}", arg(i)))) };
    match arg(0).as_str() {
        "http" => {
            let (base, path, body) = (arg(1), arg(2), arg(3));
            let conns = num(4) as usize;
            let paces = parse_pace(&arg(5));
            let secs = num(6);
            let mut callers: Vec<Box<dyn Caller>> = (0..conns)
                .map(|_| Box::new(HttpCaller::new(&base, &path, &body)) as Box<dyn Caller>)
                .collect();
            run_paces(&mut callers, &paces, secs);
        }
        "direct" => {
            let (sim, kind) = (arg(1), arg(2));
            let conns = num(3) as usize;
            let paces = parse_pace(&arg(4));
            let secs = num(5);
            direct(&sim, &kind, conns, &paces, secs, &args[6..]);
        }
        other => die(format!("unknown mode {other}")),
    }
}
