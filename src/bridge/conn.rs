//! One plugin connection's reader thread: the bounded handshake (path,
//! origin, token, capacity), the `hello` phase, then a blocking read loop
//! that answers every frame. It owns the tungstenite `WebSocket`; all its
//! outgoing frames go through the connection's writer thread (`writer.rs`).
//! Bad frames after `hello` get an `error` frame and the connection stays
//! open; only protocol-level failures (oversize, broken framing, silence)
//! end it. Whatever ends it, the hub is told, which fails every request
//! still pending on this connection at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use serde_json::{json, Map, Value};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Error as WsError, Message, WebSocket};

use super::final_message::parse_final_message;
use super::frames;
use super::hub::{Hello, Slot};
use super::writer::{self, ConnStream, Deferred, Out, OUTBOX_CAPACITY};
use super::{push, BridgeCtx};
use crate::auth::{bearer, token_ok};
use crate::util::now_ms;

/// A client that does not read for this long is dropped by the writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted TCP connection until it ends. (The handshake
/// callback's error type is tungstenite's `ErrorResponse`, large by its
/// design; it is built once per refused connection.)
#[allow(clippy::result_large_err)]
pub fn serve(tcp: TcpStream, slot: Option<Slot>, ctx: Arc<BridgeCtx>) {
    let bridge = &ctx.config.bridge;
    let _ = tcp.set_nodelay(true);
    // Bounds the handshake and the hello: a silent client cannot hold a thread.
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(bridge.hello_timeout_ms)));
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(write_half) = tcp.try_clone() else { return };
    let has_slot = slot.is_some();
    if answer_plain_request(&tcp, &ctx, has_slot) {
        return;
    }
    let check = |req: &Request, resp: Response| check_upgrade(&ctx, has_slot, req, resp);
    let stream = ConnStream { tcp, forward: None };
    let mut ws = match tungstenite::accept_hdr_with_config(stream, check, Some(ws_config(&ctx))) {
        Ok(ws) => ws,
        Err(e) => {
            log::debug!("bridge: handshake failed: {e}");
            return;
        }
    };
    let (out, out_rx) = bounded(OUTBOX_CAPACITY);
    let writer = match writer::spawn(write_half, out_rx, Duration::from_millis(bridge.heartbeat_ms)) {
        Ok(join) => join,
        Err(e) => {
            log::error!("bridge: cannot spawn writer thread: {e}");
            return;
        }
    };
    ws.get_mut().forward = Some(out.clone());
    Conn { ws, out, ctx: ctx.clone(), client: None }.run();
    let _ = writer.join();
    drop(slot);
}

fn ws_config(ctx: &BridgeCtx) -> WebSocketConfig {
    let max = ctx.config.limits.max_ws_frame_bytes;
    // Small buffers: tungstenite's defaults zero-fill 128 KiB per connection.
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Decides the upgrade: unknown path 404, foreign or missing Host 403/400,
/// web origin 403, bad token 401,
/// over `max_ws_clients` 503. Refusals happen before upgrading.
#[allow(clippy::result_large_err)]
fn check_upgrade(
    ctx: &BridgeCtx,
    has_slot: bool,
    req: &Request,
    resp: Response,
) -> Result<Response, ErrorResponse> {
    let path = req.uri().path();
    if path != "/ws/browser" && path != "/ws/firefox" {
        return Err(refusal(404, "not_found", "Unknown WebSocket path; use /ws/browser."));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
    match hosts.as_slice() {
        [host] if host.to_str().is_ok_and(|h| ctx.hosts.allows(h)) => {}
        [host] => {
            log::warn!("bridge: refused upgrade for host {:?}", String::from_utf8_lossy(host.as_bytes()));
            return Err(refusal(
                403,
                "forbidden_host",
                "Host is not this daemon; add it to allowed_hosts if it is.",
            ));
        }
        _ => {
            return Err(refusal(400, "invalid_request", "A WebSocket upgrade needs exactly one Host header."))
        }
    }
    if !ctx.origins.allows(header("origin")) {
        log::warn!("bridge: refused upgrade from web origin {:?}", header("origin"));
        return Err(refusal(403, "forbidden_origin", "Web origins may not connect."));
    }
    let query_token = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("token="))
            .and_then(|t| crate::percent::percent_decode(t, true))
    });
    let presented = bearer(header("authorization")).map(str::to_string).or(query_token);
    if !token_ok(ctx.config.token.as_deref(), presented.as_deref()) {
        return Err(refusal(401, "unauthorized", "A valid token is required."));
    }
    if !has_slot {
        return Err(refusal(503, "too_many_clients", "Too many plugin connections."));
    }
    Ok(resp)
}

/// Largest request head a plain (non-upgrade) request may have to be answered.
const PLAIN_HEAD_MAX: usize = 8 * 1024;

/// A browser shows a refused WebSocket handshake to its script only as a
/// close (1006), never the status or the reason. So a plain GET of the same
/// URL, with the same headers, is answered with the verdict the upgrade
/// would get: the same refusal, or 426 `upgrade_required` when it would be
/// accepted (the extension's popup shows the reason; docs/BRIDGE.md). Only
/// a head that has fully arrived at the first read is judged (browsers send
/// it in one piece); anything else goes to the WebSocket handshake as it
/// would without this. Returns true when it answered.
fn answer_plain_request(tcp: &TcpStream, ctx: &BridgeCtx, has_slot: bool) -> bool {
    let mut buf = [0u8; PLAIN_HEAD_MAX];
    let Ok(n) = tcp.peek(&mut buf) else { return false };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = parsed.parse(&buf[..n]) else { return false };
    let is_upgrade = parsed.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value).eq_ignore_ascii_case("websocket")
    });
    if is_upgrade {
        return false;
    }
    let mut builder =
        Request::builder().method(parsed.method.unwrap_or("GET")).uri(parsed.path.unwrap_or("/"));
    for h in parsed.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let (status, body) = match builder.body(()) {
        Ok(req) => match check_upgrade(ctx, has_slot, &req, Response::default()) {
            Ok(_) => (
                426,
                json!({ "ok": false, "error": { "code": "upgrade_required",
                    "message": "This is the plugin WebSocket endpoint; connect with a WebSocket client." } })
                .to_string(),
            ),
            Err(resp) => (resp.status().as_u16(), resp.body().clone().unwrap_or_default()),
        },
        Err(_) => (
            400,
            json!({ "ok": false, "error": { "code": "invalid_request", "message": "Malformed request." } })
                .to_string(),
        ),
    };
    // Consume the head we answer, so closing does not reset the connection
    // under the answer.
    let mut sink = vec![0u8; head_len];
    let mut reader = tcp;
    if reader.read_exact(&mut sink).is_err() {
        return true;
    }
    let reason =
        tungstenite::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut writer = tcp;
    let _ = writer.write_all(answer.as_bytes());
    let _ = tcp.shutdown(std::net::Shutdown::Write);
    true
}

fn refusal(status: u16, code: &str, message: &str) -> ErrorResponse {
    let body = json!({ "ok": false, "error": { "code": code, "message": message } }).to_string();
    let mut resp = ErrorResponse::new(Some(body));
    *resp.status_mut() = tungstenite::http::StatusCode::from_u16(status).unwrap_or_default();
    resp
}

struct Conn {
    ws: WebSocket<ConnStream>,
    out: Sender<Out>,
    ctx: Arc<BridgeCtx>,
    /// `(client_id, connection_id)` once `hello` registered it.
    client: Option<(String, String)>,
}

/// How a read ended when it did not produce a message.
enum ReadEnd {
    Silent,
    Closed,
}

impl Conn {
    fn run(mut self) {
        let Some(hello) = self.await_hello() else { return };
        let client_id = hello.client_id.clone();
        let registered = self.ctx.hub.register(hello, self.out.clone());
        if let Some(old) = registered.replaced {
            let _ = old.try_send(Out::Close { code: 4000, reason: "replaced".into() });
            log::info!("bridge: client {client_id} reconnected; replaced its previous connection");
        }
        let connection_id = registered.connection_id;
        log::info!("bridge: client {client_id} connected ({connection_id})");
        self.send(frames::hello_ack(&connection_id, self.ctx.config.bridge.heartbeat_ms));
        match push::snapshot(&self.ctx.store) {
            Ok(snapshot) => self.send(snapshot),
            Err(e) => log::error!("bridge: cannot build state snapshot: {e}"),
        }
        self.client = Some((client_id.clone(), connection_id.clone()));
        let timeout = Duration::from_millis(self.ctx.config.bridge.client_timeout_ms);
        let _ = self.ws.get_ref().tcp.set_read_timeout(Some(timeout));
        self.read_loop();
        self.ctx.hub.disconnect(&client_id, &connection_id);
        log::info!("bridge: client {client_id} disconnected ({connection_id})");
    }

    /// Queues one of the reader's own answers. A full outbox blocks the
    /// reader — backpressure on a plugin that sends faster than it reads —
    /// and never for long: a writer stuck on a full socket gives up after
    /// its write timeout, which disconnects this channel.
    fn send(&self, frame: String) {
        let _ = self.out.send(Out::Text(frame));
    }

    fn close(&self, code: u16, reason: &str) {
        let _ = self.out.send(Out::Close { code, reason: reason.into() });
    }

    /// Reads one data message; control frames only count as life signs.
    fn read_message(&mut self) -> Result<Message, ReadEnd> {
        loop {
            match self.ws.read() {
                Ok(Message::Ping(_)) | Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => self.touch(),
                Ok(Message::Close(_)) => return Err(ReadEnd::Closed),
                Ok(msg) => {
                    self.touch();
                    return Ok(msg);
                }
                Err(WsError::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Err(ReadEnd::Silent)
                }
                Err(WsError::Capacity(e)) => {
                    log::warn!("bridge: frame too large ({e}); closing with 1009");
                    self.close(1009, "frame too large");
                    return Err(ReadEnd::Closed);
                }
                Err(WsError::Protocol(e)) => {
                    log::info!("bridge: protocol error ({e}); closing with 1002");
                    self.close(1002, "protocol error");
                    return Err(ReadEnd::Closed);
                }
                Err(WsError::Utf8(_)) => {
                    self.close(1007, "invalid utf-8");
                    return Err(ReadEnd::Closed);
                }
                Err(_) => return Err(ReadEnd::Closed),
            }
        }
    }

    fn touch(&self) {
        if let Some((client_id, connection_id)) = &self.client {
            self.ctx.hub.touch(client_id, connection_id);
        }
    }

    /// The first data frame must be a valid `hello` within the timeout.
    fn await_hello(&mut self) -> Option<Hello> {
        let deadline = Instant::now() + Duration::from_millis(self.ctx.config.bridge.hello_timeout_ms);
        let msg = loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let _ = self.ws.get_ref().tcp.set_read_timeout(Some(left));
            match self.read_message() {
                Ok(msg) => break msg,
                Err(ReadEnd::Silent) if Instant::now() < deadline => continue,
                Err(ReadEnd::Silent) => {
                    self.send(frames::error(None, "not_hello", "No hello within the hello timeout."));
                    self.close(1008, "hello timeout");
                    return None;
                }
                Err(ReadEnd::Closed) => return None,
            }
        };
        let parsed = match &msg {
            Message::Text(text) => crate::browser_json::from_slice(text.as_bytes()).ok(),
            _ => None,
        };
        let obj = parsed.as_ref().and_then(Value::as_object);
        let is_hello = obj.and_then(|o| o.get("type")).and_then(Value::as_str) == Some("hello");
        let Some(obj) = obj.filter(|_| is_hello) else {
            self.send(frames::error(None, "not_hello", "The first frame must be hello."));
            self.close(1008, "expected hello");
            return None;
        };
        let id = frames::frame_id(obj).ok().flatten();
        match frames::parse_hello(obj) {
            Ok(hello) => Some(hello),
            Err(e) => {
                self.send(frames::error(id.as_deref(), "invalid_frame", &e.message));
                self.close(1008, "invalid hello");
                None
            }
        }
    }

    fn read_loop(&mut self) {
        loop {
            match self.read_message() {
                Ok(Message::Text(text)) => self.handle_text(text.as_str()),
                Ok(Message::Binary(_)) => {
                    self.send(frames::error(None, "unsupported_frame", "Binary frames are not supported."))
                }
                Ok(_) => {}
                Err(ReadEnd::Silent) => {
                    log::info!("bridge: client silent for client_timeout_ms; closing");
                    self.close(1001, "client timeout");
                    return;
                }
                Err(ReadEnd::Closed) => return,
            }
        }
    }

    fn handle_text(&self, text: &str) {
        let Ok(Value::Object(mut obj)) = crate::browser_json::from_slice(text.as_bytes()) else {
            return self.send(frames::error(
                None,
                "invalid_frame",
                "Frame must be a JSON object with a \"type\".",
            ));
        };
        let id = match frames::frame_id(&obj) {
            Ok(id) => id,
            Err(e) => return self.send(frames::error(None, "invalid_frame", &e.message)),
        };
        let id = id.as_deref();
        let Some(kind) = obj.get("type").and_then(Value::as_str).map(str::to_string) else {
            return self.send(frames::error(id, "invalid_frame", "Frame has no string \"type\"."));
        };
        log::debug!("bridge: frame {kind}");
        match kind.as_str() {
            "tabs" => self.on_tabs(id, &obj),
            "login_state" => self.on_login_state(id, &mut obj),
            "browser.final_message" => self.on_final_message(id, &obj),
            "action_result" | "api_response" | "stream_end" | "stream_error" => self.on_answer(id, obj, true),
            "stream_event" => self.on_answer(id, obj, false),
            "ping" => self.send(frames::pong()),
            "hello" => self.send(frames::error(
                id,
                "invalid_frame",
                "hello was already received on this connection.",
            )),
            "error" => log::info!("bridge: plugin reported an error frame"),
            _ => self.send(frames::error(
                id,
                "unknown_type",
                &format!("Unknown frame type \"{}\".", truncate(&kind)),
            )),
        }
    }

    fn client_id(&self) -> &str {
        self.client.as_ref().map(|(c, _)| c.as_str()).unwrap_or_default()
    }

    fn on_tabs(&self, id: Option<&str>, obj: &Map<String, Value>) {
        match frames::parse_tabs(obj) {
            Ok(tabs) => {
                self.ctx.hub.set_tabs(self.client_id(), tabs);
                self.send(frames::ack(id, json!({})));
            }
            Err(e) => self.send(frames::error(id, "invalid_frame", &e.message)),
        }
    }

    fn on_login_state(&self, id: Option<&str>, obj: &mut Map<String, Value>) {
        let mut frame = Value::Object(std::mem::take(obj));
        let mut dropped = Vec::new();
        frames::scrub_credentials(&mut frame, &mut dropped);
        if !dropped.is_empty() {
            // Names only: the values are gone and must never be logged.
            log::warn!("bridge: dropped credential keys from login_state: {dropped:?}");
        }
        match frames::parse_login_state(frame.as_object().expect("still an object")) {
            Ok(login) => {
                self.ctx.hub.set_login_state(self.client_id(), login);
                self.send(frames::ack(id, json!({ "dropped": dropped })));
            }
            Err(e) => self.send(frames::error(id, "invalid_frame", &e.message)),
        }
    }

    /// Same ingest as `POST /v1/messages`. The ack goes out only after the
    /// commit, but the reader does not wait for it: the writer thread sends
    /// it in order once the store answers, so a plugin that pipelines its
    /// messages gets them group-committed.
    fn on_final_message(&self, id: Option<&str>, obj: &Map<String, Value>) {
        let mut input = match parse_final_message(obj, false, now_ms()) {
            Ok(input) => input,
            Err(e) => return self.send(frames::error(id, "invalid_frame", &e.message)),
        };
        input.client_id = Some(self.client_id().to_string());
        let answer = self.ctx.store.ingest_async(input, self.ctx.ingest_settings);
        let (id, hub) = (id.map(str::to_string), self.ctx.hub.clone());
        let render = move |result: Result<crate::store::IngestOutcome, crate::store::StoreError>| {
            let id = id.as_deref();
            match result {
                Ok(outcome) => {
                    if outcome.automation_changed {
                        hub.notify_automation_changed();
                    }
                    Some(frames::ack(
                        id,
                        json!({
                            "message_id": outcome.message.message_id,
                            "local_conversation_id": outcome.local_conversation_id,
                            "link_id": outcome.link_id, "duplicate": outcome.duplicate,
                        }),
                    ))
                }
                Err(e) => {
                    log::error!("bridge: ingest failed: {e}");
                    Some(frames::error(id, "internal_error", &format!("Message not stored: {e}.")))
                }
            }
        };
        let _ = self.out.send(Out::Deferred(Deferred { answer, render: Box::new(render) }));
    }

    fn on_answer(&self, id: Option<&str>, obj: Map<String, Value>, last: bool) {
        let Some(request_id) = obj.get("request_id").and_then(Value::as_str).map(str::to_string) else {
            return self.send(frames::error(id, "invalid_frame", "Field \"request_id\" is required."));
        };
        let streamed = obj.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("stream_"));
        if streamed && obj.get("seq").and_then(Value::as_i64).is_none_or(|s| s < 1) {
            return self.send(frames::error(id, "invalid_frame", "Field \"seq\" must be an integer >= 1."));
        }
        let connection_id = self.client.as_ref().map(|(_, c)| c.as_str()).unwrap_or_default();
        self.ctx.hub.answer(connection_id, &request_id, Value::Object(obj), last);
    }
}

/// Echoing a hostile type name back is fine, but not a megabyte of it.
fn truncate(s: &str) -> String {
    crate::util::cut_chars(s, 64)
}
