//! A small blocking WebSocket test client for the plugin bridge, on
//! `tungstenite`, plus two helpers built on it:
//!
//! - [`WsClient`]: connect with extra headers (and an optional `Origin`), get
//!   the HTTP status of a refused upgrade, send text / binary / raw frames
//!   (including oversize ones), receive JSON frames with a deadline (pings are
//!   skipped and counted; tungstenite answers them with pongs on the next
//!   read), wait for the daemon's close frame, or stop reading altogether to
//!   play a dead plugin ([`WsClient::stop_reading`]).
//! - [`Plugin`]: a connected client moved onto its own thread, so a test can
//!   block in an HTTP call while "the plugin" receives the daemon's requests
//!   and answers them (automatically through a responder, or frame by frame
//!   on the test's command).
//! - [`Sse`]: a streaming HTTP/1.1 POST that hands out server-sent events as
//!   they arrive (the raw relay's `stream: true` answer).
//!
//! Nothing here sleeps to synchronise: every wait is a read with a deadline.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue, Uri};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::now_ms;

/// Default deadline of one expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------

/// Why a connection attempt did not give a WebSocket.
#[derive(Debug)]
pub enum ConnectError {
    /// The daemon answered the upgrade with an HTTP error status.
    Refused { status: u16, body: String },
    /// Anything else (connect failure, handshake I/O error, ...).
    Other(String),
}

impl ConnectError {
    /// The refusal's HTTP status; panics for other errors.
    pub fn status(&self) -> u16 {
        match self {
            ConnectError::Refused { status, .. } => *status,
            ConnectError::Other(e) => panic!("expected a refused upgrade, got: {e}"),
        }
    }
}

/// `ws://HOST:PORT/...` → the socket address and a path+query replaced by
/// `path` (when given).
fn with_path(url: &str, path: Option<&str>) -> String {
    match path {
        None => url.to_string(),
        Some(p) => {
            let uri: Uri = url.parse().expect("ws url");
            format!("ws://{}{}", uri.authority().expect("authority"), p)
        }
    }
}

/// The URL of a daemon's bridge with another path (and query), e.g.
/// `/ws/firefox` or `/ws/browser?token=T`.
pub fn url_with_path(url: &str, path_and_query: &str) -> String {
    with_path(url, Some(path_and_query))
}

/// Connects to `url` sending the extra `headers` (e.g. `Authorization`,
/// `Origin`) with the upgrade request.
pub fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, ConnectError> {
    let uri: Uri = url.parse().map_err(|e| ConnectError::Other(format!("bad url {url}: {e}")))?;
    let authority =
        uri.authority().ok_or_else(|| ConnectError::Other(format!("no authority in {url}")))?.to_string();
    let addr: SocketAddr =
        authority.parse().map_err(|e| ConnectError::Other(format!("bad address {authority}: {e}")))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| ConnectError::Other(format!("connect {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| ConnectError::Other(e.to_string()))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| ConnectError::Other(e.to_string()))?;
    let mut request = url.into_client_request().map_err(|e| ConnectError::Other(format!("request: {e}")))?;
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).expect("header name");
        let value = HeaderValue::from_str(v).expect("header value");
        request.headers_mut().append(name, value);
    }
    match tungstenite::client::client_with_config(request, tcp, None) {
        Ok((ws, _resp)) => Ok(WsClient::new(ws, addr)),
        Err(HandshakeError::Failure(WsError::Http(resp))) => Err(ConnectError::Refused {
            status: resp.status().as_u16(),
            body: resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
        }),
        Err(HandshakeError::Failure(e)) => Err(ConnectError::Other(format!("handshake: {e}"))),
        Err(HandshakeError::Interrupted(_)) => {
            Err(ConnectError::Other("handshake interrupted (timeout)".into()))
        }
    }
}

/// Connects or panics.
pub fn connect(url: &str, headers: &[(&str, &str)]) -> WsClient {
    try_connect(url, headers).unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
}

/// The HTTP status of a refused upgrade; panics if the upgrade succeeded.
pub fn refused_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    match try_connect(url, headers) {
        Ok(_) => panic!("upgrade to {url} with {headers:?} was accepted, expected a refusal"),
        Err(e) => e.status(),
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

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
    fn new(ws: WebSocket<TcpStream>, peer: SocketAddr) -> WsClient {
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

/// Splits unmasked server frames; stops at an incomplete one.
pub fn parse_server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let masked = bytes[1] & 0x80 != 0;
        let mut len = (bytes[1] & 0x7f) as usize;
        let mut pos = 2;
        if len == 126 {
            if bytes.len() < 4 {
                break;
            }
            len = u16::from_be_bytes([bytes[2], bytes[3]]) as usize;
            pos = 4;
        } else if len == 127 {
            if bytes.len() < 10 {
                break;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[2..10]);
            len = u64::from_be_bytes(b) as usize;
            pos = 10;
        }
        if masked {
            pos += 4;
        }
        if bytes.len() < pos + len {
            break;
        }
        frames.push((opcode, bytes[pos..pos + len].to_vec()));
        bytes = &bytes[pos + len..];
    }
    frames
}

/// A masked client frame (`fin` set) with the given opcode and payload.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | (opcode & 0x0f)];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

// ---------------------------------------------------------------------------
// A plugin on its own thread
// ---------------------------------------------------------------------------

/// Builds the answer frames to one daemon request (`api_request`, `action`,
/// `proxy_delivery`); an empty list = do not answer.
pub type Responder = Box<dyn FnMut(&Value) -> Vec<Value> + Send>;

/// A frame the plugin thread received, with when it read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub frame: Value,
    pub at: Instant,
    pub at_ms: i64,
}

enum Cmd {
    Send(Vec<Value>),
    SetResponder(Option<Responder>, Sender<()>),
    Drop,
    Close,
}

/// A connected, introduced plugin served by its own thread. Every frame it
/// receives goes to `frames` (after the responder, if any, answered it).
/// When the connection ends, a synthetic `{"type":"_closed", "code", "reason"}`
/// frame is delivered and the thread ends.
pub struct Plugin {
    pub client_id: String,
    pub connection_id: String,
    cmd: Sender<Cmd>,
    frames: Receiver<Received>,
    join: Option<JoinHandle<()>>,
}

/// `api_response` 200 with a small JSON body, for any `api_request`;
/// `action_result` success for `action` / `proxy_delivery`.
pub fn answer_ok(request: &Value) -> Vec<Value> {
    let request_id = request["request_id"].clone();
    match request["type"].as_str() {
        Some("api_request") => vec![json!({
            "type": "api_response", "request_id": request_id, "status": 200,
            "headers": {"content-type": "application/json"}, "body": {"path": request["path"]},
        })],
        Some("action") | Some("proxy_delivery") => vec![json!({
            "type": "action_result", "request_id": request_id,
            "action": request["action"].as_str().unwrap_or("proxy_delivery"),
            "accepted": true, "completed": true, "failed": false, "reason": null,
            "http_status": 200, "received_at": now_ms(), "result": {"ok": true},
            "target": {"client_id": null, "platform": request["platform"], "tab_id": request["tab_id"]},
        })],
        _ => Vec::new(),
    }
}

/// `api_response` with the given upstream status for every `api_request`.
pub fn answer_status(status: u16) -> Responder {
    Box::new(move |request: &Value| {
        if request["type"] == "api_request" {
            vec![json!({"type": "api_response", "request_id": request["request_id"],
                        "status": status, "headers": {}, "body": {"error": status}})]
        } else {
            Vec::new()
        }
    })
}

impl Plugin {
    /// Connects, says hello for `platforms`, reports a login state for each
    /// of `logins`, then moves the connection onto a thread. `responder`
    /// answers the daemon's requests; `None` leaves that to the test
    /// (`next_request` + `send`).
    pub fn start(
        url: &str,
        client_id: &str,
        platforms: &[&str],
        logins: &[&str],
        responder: Option<Responder>,
    ) -> Plugin {
        let mut client = connect(url, &[]);
        let (ack, _) = client.hello(client_id, platforms);
        for platform in logins {
            client.login(platform);
        }
        let (cmd_tx, cmd_rx) = unbounded();
        let (frame_tx, frame_rx) = unbounded();
        let join = std::thread::Builder::new()
            .name(format!("plugin-{client_id}"))
            .spawn(move || plugin_loop(client, responder, cmd_rx, frame_tx))
            .expect("spawn plugin thread");
        Plugin {
            client_id: client_id.to_string(),
            connection_id: ack["connection_id"].as_str().unwrap_or_default().to_string(),
            cmd: cmd_tx,
            frames: frame_rx,
            join: Some(join),
        }
    }

    /// Sends frames (in order, back to back).
    pub fn send(&self, frames: Vec<Value>) {
        let _ = self.cmd.send(Cmd::Send(frames));
    }

    pub fn send_one(&self, frame: Value) {
        self.send(vec![frame]);
    }

    /// Replaces the responder (None: stop answering automatically); returns
    /// once the plugin thread uses the new one, so a request sent after this
    /// call is answered (or not) by it.
    pub fn set_responder(&self, responder: Option<Responder>) {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let _ = self.cmd.send(Cmd::SetResponder(responder, done_tx));
        let _ = done_rx.recv_timeout(Duration::from_secs(5));
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_connection(&self) {
        let _ = self.cmd.send(Cmd::Drop);
    }

    /// Closes with a close frame.
    pub fn close(&self) {
        let _ = self.cmd.send(Cmd::Close);
    }

    /// The next received frame within `timeout`.
    pub fn next_frame(&self, timeout: Duration) -> Option<Received> {
        self.frames.recv_timeout(timeout).ok()
    }

    /// The next received frame of type `kind` (others are passed over);
    /// panics on timeout.
    pub fn next_of(&self, kind: &str, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        let mut passed = Vec::new();
        loop {
            match self.frames.recv_deadline(deadline) {
                Ok(r) if r.frame["type"] == kind => return r,
                Ok(r) => passed.push(r.frame),
                Err(_) => {
                    panic!("plugin {}: no {kind} within {timeout:?}; passed over {passed:?}", self.client_id)
                }
            }
        }
    }

    /// The next `api_request` / `action` / `proxy_delivery` received.
    pub fn next_request(&self, timeout: Duration) -> Value {
        self.next_request_received(timeout).frame
    }

    /// Like `next_request`, with the time it was received.
    pub fn next_request_received(&self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            match self.frames.recv_deadline(deadline) {
                Ok(r) if r.frame.get("request_id").is_some() => return r,
                Ok(_) => {}
                Err(_) => panic!("plugin {}: no request within {timeout:?}", self.client_id),
            }
        }
    }

    /// Waits until the connection has ended; returns the close code (if
    /// the daemon sent one).
    pub fn wait_closed(&self, timeout: Duration) -> Option<u16> {
        let received = self.next_of("_closed", timeout);
        received.frame["code"].as_u64().map(|c| c as u16)
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.cmd.send(Cmd::Drop);
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

fn plugin_loop(
    mut client: WsClient,
    mut responder: Option<Responder>,
    cmds: Receiver<Cmd>,
    frames: Sender<Received>,
) {
    // Short reads so commands are taken within a few ms.
    let tick = Duration::from_millis(3);
    loop {
        match client.recv_event(tick) {
            Event::Json(frame) => {
                if frame.get("request_id").is_some() {
                    if let Some(respond) = responder.as_mut() {
                        for answer in respond(&frame) {
                            if client.try_send_text(&answer.to_string()).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = frames.send(Received { frame, at: Instant::now(), at_ms: now_ms() });
            }
            Event::Timeout | Event::Text(_) | Event::Binary(_) => {}
            Event::Close(close) => {
                let (code, reason) = close.unwrap_or((0, String::new()));
                let _ = frames.send(closed_frame(Some(code), &reason));
                return;
            }
            Event::Gone(why) => {
                let _ = frames.send(closed_frame(None, &why));
                return;
            }
        }
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Send(list)) => {
                    for frame in list {
                        let _ = client.try_send_text(&frame.to_string());
                    }
                }
                Ok(Cmd::SetResponder(r, done)) => {
                    responder = r;
                    let _ = done.send(());
                }
                Ok(Cmd::Drop) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    client.drop_connection();
                    let _ = frames.send(closed_frame(None, "dropped by the test"));
                    return;
                }
                Ok(Cmd::Close) => {
                    client.close();
                    let _ = frames.send(closed_frame(None, "closed by the test"));
                    return;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
            }
        }
    }
}

fn closed_frame(code: Option<u16>, reason: &str) -> Received {
    Received {
        frame: json!({"type": "_closed", "code": code, "reason": reason}),
        at: Instant::now(),
        at_ms: now_ms(),
    }
}

// ---------------------------------------------------------------------------
// Server-sent events over a streaming HTTP response
// ---------------------------------------------------------------------------

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
    /// When the test read it.
    pub at: Instant,
}

/// A POST whose response is read incrementally: `status`/`headers` once the
/// head arrived, then events (chunked `text/event-stream`) one by one, or
/// the whole body for a non-stream answer.
pub struct Sse {
    tcp: TcpStream,
    buf: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    content_length: Option<usize>,
    /// Decoded body bytes not yet turned into events.
    body: Vec<u8>,
    /// The terminating chunk (or EOF) was seen.
    pub finished: bool,
}

impl Sse {
    /// Sends `POST path` with a JSON body and waits (at most `timeout`) for
    /// the response head.
    pub fn post(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
        timeout: Duration,
    ) -> Sse {
        let mut sse = Sse::send(addr, path, headers, body);
        sse.head(timeout);
        sse
    }

    /// Sends `POST path` with a JSON body without waiting for anything; call
    /// `head` before reading events (the relay sends its head only once the
    /// plugin's first frame arrived).
    pub fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Sse {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        let body = body.to_string();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).expect("write head");
        tcp.write_all(body.as_bytes()).expect("write body");
        Sse {
            tcp,
            buf: Vec::new(),
            status: 0,
            headers: Vec::new(),
            chunked: false,
            content_length: None,
            body: Vec::new(),
            finished: false,
        }
    }

    /// Waits (at most `timeout`) for the response head; returns the status.
    pub fn head(&mut self, timeout: Duration) -> u16 {
        if self.status == 0 {
            self.read_head(timeout);
        }
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Reads more bytes (until `deadline`); false on EOF or timeout.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = self.tcp.set_read_timeout(Some(left));
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk) {
            Ok(0) => {
                self.finished = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => false,
            Err(_) => {
                self.finished = true;
                false
            }
        }
    }

    fn read_head(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                self.status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
                self.headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                self.chunked = self
                    .header("transfer-encoding")
                    .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                self.content_length = self.header("content-length").and_then(|l| l.parse().ok());
                return;
            }
            if !self.fill(deadline) {
                panic!("no response head within {timeout:?}: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Moves complete chunks from `buf` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.buf);
            return;
        }
        loop {
            let Some(line_end) = find(&self.buf, b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                self.finished = true;
                self.buf.clear();
                return;
            }
            if self.buf.len() < line_end + 2 + size + 2 {
                return;
            }
            let start = line_end + 2;
            self.body.extend_from_slice(&self.buf[start..start + size]);
            self.buf.drain(..start + size + 2);
        }
    }

    /// The next event within `timeout`, or `None` when the stream ended or
    /// nothing arrived in time.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        self.head(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            if let Some(end) = find(&self.body, b"\n\n") {
                let block = String::from_utf8_lossy(&self.body[..end]).into_owned();
                self.body.drain(..end + 2);
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.trim_start());
                    }
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { event, data, at: Instant::now() });
            }
            if self.finished || !self.fill(deadline) {
                return None;
            }
        }
    }

    /// Every remaining event until the stream ends (at most `timeout`).
    pub fn rest(&mut self, timeout: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(e) = self.next_event(deadline.saturating_duration_since(Instant::now())) {
            out.push(e);
        }
        out
    }

    /// The socket, for a test that reads what is left itself (bytes
    /// already taken from it stay behind).
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// The whole body of a non-stream answer, as JSON.
    pub fn json(&mut self, timeout: Duration) -> Value {
        self.head(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            let complete = match self.content_length {
                Some(len) => self.body.len() >= len,
                None => self.finished,
            };
            if complete {
                return serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                    panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
                });
            }
            if self.finished || !self.fill(deadline) {
                self.decode();
                let complete = match self.content_length {
                    Some(len) => self.body.len() >= len,
                    None => self.finished,
                };
                if !complete {
                    panic!("incomplete body: {:?}", String::from_utf8_lossy(&self.body));
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
