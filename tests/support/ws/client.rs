//! [`WsClient`], the test's side of one bridge connection: send text,
//! binary or raw frames (including oversize ones), receive JSON frames with
//! a deadline (pings are skipped and counted; tungstenite answers them with
//! pongs on the next read), speak the plugin's `hello` and `login_state`,
//! wait for the daemon's close frame; and [`Stalled`], a client that stops
//! reading to play a dead plugin and can read the raw bytes the daemon sent.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::raw::{masked_frame, parse_server_frames};
use super::FRAME_TIMEOUT;
use crate::support::now_ms;

/// One received thing.
#[derive(Debug, Clone)]
pub enum Event {
    /// A text frame holding JSON.
    Json(Value),
    /// A text frame that is not JSON.
    Text(String),
    Binary(Vec<u8>),
    /// The daemon's close frame (code and reason), or `None` for a close
    /// frame without a code.
    Close(Option<(u16, String)>),
    /// The connection ended without a close frame (EOF, reset, error).
    Gone(String),
    /// Nothing arrived before the deadline.
    Timeout,
}

pub struct WsClient {
    ws: WebSocket<TcpStream>,
    pub peer: SocketAddr,
    /// Pings received so far (each answered with a pong on the next read).
    pub pings: usize,
    /// When the last ping arrived.
    pub last_ping_at: Option<Instant>,
    /// JSON frames passed over by `recv_type` / `expect_close`, oldest first.
    pub skipped: Vec<Value>,
    closed: bool,
}

impl std::fmt::Debug for WsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsClient")
            .field("peer", &self.peer)
            .field("pings", &self.pings)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl WsClient {
    pub(super) fn new(ws: WebSocket<TcpStream>, peer: SocketAddr) -> WsClient {
        WsClient { ws, peer, pings: 0, last_ping_at: None, skipped: Vec::new(), closed: false }
    }

    /// The underlying socket (e.g. to shut it down abruptly).
    pub fn tcp(&self) -> &TcpStream {
        self.ws.get_ref()
    }

    pub fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text.to_string())).unwrap_or_else(|e| panic!("send text: {e}"));
    }

    /// Sends a text frame; an error (the daemon already closed) is returned.
    pub fn try_send_text(&mut self, text: &str) -> Result<(), String> {
        self.ws.send(Message::text(text.to_string())).map_err(|e| e.to_string())
    }

    pub fn send_json(&mut self, value: &Value) {
        self.send_text(&value.to_string());
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws.send(Message::binary(bytes.to_vec())).unwrap_or_else(|e| panic!("send binary: {e}"));
    }

    /// Writes bytes straight to the socket, bypassing tungstenite (whose
    /// own writes are always flushed, so nothing interleaves).
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let tcp = self.ws.get_mut();
        tcp.write_all(bytes)?;
        tcp.flush()
    }

    /// Sends one masked text frame of `len` bytes of payload as raw bytes
    /// (the header declares the full length up front). The write may fail
    /// half-way when the daemon closes on the header alone; that is returned.
    pub fn send_oversize_text(&mut self, len: usize) -> io::Result<()> {
        let payload = vec![b'x'; len];
        let frame = masked_frame(0x1, &payload);
        self.send_raw(&frame)
    }

    /// Sends `{"type":"ping"}` (with an `id`) and waits for the pong.
    /// Proves the connection is open and serving.
    pub fn ping(&mut self) -> Value {
        let id = format!("p-{}", now_ms());
        self.send_json(&json!({"type": "ping", "id": id}));
        self.recv_type("pong", FRAME_TIMEOUT)
    }

    /// The next event within `timeout`. Pings and pongs are counted and
    /// skipped (tungstenite queues the pong and sends it on the next read).
    pub fn recv_event(&mut self, timeout: Duration) -> Event {
        if self.closed {
            return Event::Gone("already closed".into());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // One last non-blocking look would need a zero timeout,
                // which std refuses; a deadline is a deadline.
                return Event::Timeout;
            }
            let _ = self.ws.get_ref().set_read_timeout(Some(left));
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let text = text.as_str().to_string();
                    return match serde_json::from_str::<Value>(&text) {
                        Ok(v) => Event::Json(v),
                        Err(_) => Event::Text(text),
                    };
                }
                Ok(Message::Binary(bytes)) => return Event::Binary(bytes.to_vec()),
                Ok(Message::Ping(_)) => {
                    self.pings += 1;
                    self.last_ping_at = Some(Instant::now());
                }
                Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
                Ok(Message::Close(frame)) => {
                    self.closed = true;
                    return Event::Close(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())));
                }
                Err(WsError::Io(e))
                    if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.closed = true;
                    return Event::Gone(e.to_string());
                }
            }
        }
    }

    /// The next JSON frame within `timeout`, or `None` on timeout. Panics
    /// when the connection closes or something other than JSON arrives.
    pub fn recv_json(&mut self, timeout: Duration) -> Option<Value> {
        match self.recv_event(timeout) {
            Event::Json(v) => Some(v),
            Event::Timeout => None,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// The next JSON frame; panics if none arrives within `timeout`.
    pub fn expect_json(&mut self, timeout: Duration) -> Value {
        self.recv_json(timeout).unwrap_or_else(|| panic!("no frame within {timeout:?}"))
    }

    /// The next frame of type `kind`, passing over (and keeping in
    /// `skipped`) frames of other types; panics on timeout or close.
    pub fn recv_type(&mut self, kind: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_event(left) {
                Event::Json(v) if v["type"] == kind => return v,
                Event::Json(v) => self.skipped.push(v),
                Event::Timeout => {
                    panic!("no {kind} frame within {timeout:?}; passed over: {:?}", self.skipped)
                }
                other => panic!("waiting for {kind}: got {other:?}; passed over: {:?}", self.skipped),
            }
        }
    }

    /// The answer (`ack` or `error`) whose `id` is `id`, passing over other
    /// frames (state pushes, requests) into `skipped`.
    pub fn recv_answer(&mut self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_event(left) {
                Event::Json(v) if v["id"] == id && (v["type"] == "ack" || v["type"] == "error") => return v,
                Event::Json(v) => self.skipped.push(v),
                Event::Timeout => {
                    panic!("no answer to frame {id} within {timeout:?}; passed over: {:?}", self.skipped)
                }
                other => panic!("waiting for the answer to {id}: got {other:?}"),
            }
        }
    }

    /// Sends `frame` with `"id": id` added and returns its answer.
    pub fn call(&mut self, id: &str, mut frame: Value) -> Value {
        frame["id"] = json!(id);
        self.send_json(&frame);
        self.recv_answer(id, FRAME_TIMEOUT)
    }

    /// Sends `hello` and returns `(hello_ack, state_snapshot)`.
    pub fn hello(&mut self, client_id: &str, platforms: &[&str]) -> (Value, Value) {
        self.send_json(&json!({
            "type": "hello", "client_id": client_id, "browser": "firefox", "version": "1.4.0",
            "platforms": platforms, "protocol_version": 1,
        }));
        let ack = self.expect_json(FRAME_TIMEOUT);
        assert_eq!(ack["type"], "hello_ack", "first answer to hello: {ack}");
        let snapshot = self.expect_json(FRAME_TIMEOUT);
        assert_eq!(snapshot["type"], "state_snapshot", "second answer to hello: {snapshot}");
        (ack, snapshot)
    }

    /// Sends a `login_state` (metadata only) for `platform` and checks the ack.
    pub fn login(&mut self, platform: &str) {
        let id = format!("login-{platform}");
        let ack = self.call(
            &id,
            json!({"type": "login_state", "platform": platform, "captured_at": now_ms(),
                   "fingerprint": "sha256:test", "account": {"email_hint": "t***@x.com"}}),
        );
        assert_eq!(ack["type"], "ack", "login_state answer: {ack}");
    }

    /// Reads until the daemon's close frame and returns its code and reason,
    /// keeping JSON frames that came before it in `skipped`. Panics on
    /// timeout, or when the connection ends without a close frame.
    pub fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_event(left) {
                Event::Close(Some(close)) => return close,
                Event::Close(None) => panic!("close frame without a code"),
                Event::Json(v) => self.skipped.push(v),
                Event::Timeout => panic!("no close frame within {timeout:?}; frames: {:?}", self.skipped),
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }

    /// Like `expect_close` but returns what happened instead of panicking:
    /// `Event::Close`, `Event::Gone` or `Event::Timeout`.
    pub fn wait_close(&mut self, timeout: Duration) -> Event {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv_event(left) {
                Event::Json(v) => self.skipped.push(v),
                Event::Text(_) | Event::Binary(_) => {}
                other => return other,
            }
        }
    }

    /// Closes from our side with a close frame.
    pub fn close(mut self) {
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
    }

    /// Drops the TCP connection without a close frame (a crashed plugin).
    pub fn drop_connection(self) {
        let _ = self.ws.get_ref().shutdown(Shutdown::Both);
    }

    /// Stops reading (and so answering pings) while keeping the socket
    /// open: a plugin that hangs.
    pub fn stop_reading(self) -> Stalled {
        Stalled { client: Some(self) }
    }
}

/// A client that no longer reads or writes; its socket stays open until it
/// is dropped or resumed.
pub struct Stalled {
    client: Option<WsClient>,
}

impl Stalled {
    /// Starts reading again. Note that tungstenite first tries to send the
    /// pongs it still owes, which fails once the daemon has shut the socket;
    /// use `raw_frames` to see what the daemon sent in that case.
    pub fn resume(mut self) -> WsClient {
        self.client.take().expect("stalled client")
    }

    /// Reads the socket directly (bypassing tungstenite, so nothing is sent)
    /// until EOF or `timeout`, and splits what arrived into frames
    /// `(opcode, payload)`. A close frame's payload starts with its code.
    pub fn raw_frames(mut self, timeout: Duration) -> Vec<(u8, Vec<u8>)> {
        let client = self.client.take().expect("stalled client");
        let mut tcp = client.ws.get_ref().try_clone().expect("clone socket");
        let deadline = Instant::now() + timeout;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = tcp.set_read_timeout(Some(left));
            match tcp.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        drop(client);
        parse_server_frames(&bytes)
    }
}
