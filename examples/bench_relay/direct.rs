//! `direct`: the baseline, a minimal bridge that a real simulator connects
//! to, with callers sending frames over that one socket.

use std::collections::HashMap;
use std::io::Write;
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

use super::load::{run_paces, Caller, Pace};
use super::{die, ANSWER_TIMEOUT};

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

pub(super) fn direct(
    sim_bin: &str,
    kind: &str,
    conns: usize,
    paces: &[Pace],
    secs: f64,
    sim_args: &[String],
) {
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
