//! One plugin connection's reader thread: the handshake (`upgrade.rs`) and
//! the `hello`, both within one deadline from accept, then a blocking read
//! loop that answers every frame. The connection waits in the lobby until
//! its hello, and takes a plugin slot only then (`hub::register`). It owns
//! the tungstenite `WebSocket`; all its outgoing frames go through the
//! connection's writer thread (`writer.rs`). Bad frames after `hello` get
//! an `error` frame and the connection stays open; only protocol-level
//! failures (oversize, broken framing, silence) end it. Whatever ends it,
//! the hub is told, which fails every request still pending on this
//! connection at once.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use serde_json::{json, Map, Value};
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, WebSocket};

use super::final_message::parse_final_message;
use super::frames;
use super::hub::{Hello, MAX_LOGIN_STATES};
use super::lobby::Ticket;
use super::writer::{self, ConnStream, Deferred, Out, OUTBOX_CAPACITY};
use super::{push, upgrade, BridgeCtx};
use crate::util::now_ms;

/// Serves one accepted TCP connection until it ends. The handshake and the
/// hello share one deadline, `hello_timeout_ms` from now (the accept):
/// every read before the hello is cut at it, however the bytes drip.
pub fn serve(tcp: TcpStream, ticket: Ticket, ctx: Arc<BridgeCtx>) {
    let bridge = &ctx.config.bridge;
    let deadline = Instant::now() + Duration::from_millis(bridge.hello_timeout_ms);
    let _ = tcp.set_nodelay(true);
    // The handshake's writes; the writer thread keeps its own budget.
    let _ = tcp.set_write_timeout(Some(writer::STALL_BUDGET));
    let Some(leftover) = upgrade::handshake(&tcp, deadline, &ctx) else { return };
    let Ok(write_half) = tcp.try_clone() else { return };
    let stream = ConnStream { tcp, forward: None, deadline: Some(deadline) };
    let mut ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(ws_config(&ctx)));
    let (out, out_rx) = bounded(OUTBOX_CAPACITY);
    let writer = match writer::spawn(write_half, out_rx, Duration::from_millis(bridge.heartbeat_ms)) {
        Ok(join) => join,
        Err(e) => {
            log::error!("bridge: cannot spawn writer thread: {e}");
            return;
        }
    };
    ws.get_mut().forward = Some(out.clone());
    Conn { ws, out, ctx: ctx.clone(), client: None, ticket: Some(ticket), told_tabs_dropped: false }.run();
    let _ = writer.join();
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

struct Conn {
    ws: WebSocket<ConnStream>,
    out: Sender<Out>,
    ctx: Arc<BridgeCtx>,
    /// `(client_id, connection_id)` once `hello` registered it.
    client: Option<(String, String)>,
    /// The place in the lobby, given up at hello.
    ticket: Option<Ticket>,
    /// Whether the log has said that this connection's tabs were cut.
    told_tabs_dropped: bool,
}

/// How a read ended when it did not produce a message.
enum ReadEnd {
    Silent,
    Closed,
}

impl Conn {
    fn run(mut self) {
        let Some(hello) = self.await_hello() else { return };
        // Out of the lobby: from here on the connection holds a plugin slot.
        self.ticket = None;
        self.ws.get_mut().deadline = None;
        let client_id = hello.client_id.clone();
        let heartbeat_ms = self.ctx.config.bridge.heartbeat_ms;
        let greeting = |connection_id: &str| frames::hello_ack(connection_id, heartbeat_ms);
        let Ok(registered) = self.ctx.hub.register(hello, self.out.clone(), greeting) else {
            log::warn!("bridge: client {client_id} refused: max_ws_clients plugins are connected");
            self.close(1013, "too many plugin connections");
            return;
        };
        if let Some(old) = registered.replaced {
            let _ = old.try_send(Out::Close { code: 4000, reason: "replaced".into() });
            log::info!("bridge: client {client_id} reconnected; replaced its previous connection");
        }
        let connection_id = registered.connection_id;
        log::info!("bridge: client {client_id} connected ({connection_id})");
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
    /// its stall budget (`writer::STALL_BUDGET`), which disconnects this
    /// channel.
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
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the echo of the client's Close
                    // (RFC 6455 §5.5.1); it goes out through the writer,
                    // which then half-closes and drains (writer.rs).
                    let _ = self.ws.flush();
                    return Err(ReadEnd::Closed);
                }
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

    /// The first data frame must be a valid `hello`, by the deadline the
    /// connection's stream enforces (`ConnStream::deadline`). A first frame
    /// of another kind is answered `not_hello`, echoing its `id`.
    fn await_hello(&mut self) -> Option<Hello> {
        let msg = match self.read_message() {
            Ok(msg) => msg,
            Err(ReadEnd::Silent) => {
                self.send(frames::error(None, "not_hello", "No hello within the hello timeout."));
                self.close(1008, "hello timeout");
                return None;
            }
            Err(ReadEnd::Closed) => return None,
        };
        let parsed = match &msg {
            Message::Text(text) => crate::browser_json::from_slice(text.as_bytes()).ok(),
            _ => None,
        };
        let obj = parsed.as_ref().and_then(Value::as_object);
        let id = obj.and_then(|o| frames::frame_id(o).ok().flatten());
        let is_hello = obj.and_then(|o| o.get("type")).and_then(Value::as_str) == Some("hello");
        let Some(obj) = obj.filter(|_| is_hello) else {
            self.send(frames::error(id.as_deref(), "not_hello", "The first frame must be hello."));
            self.close(1008, "expected hello");
            return None;
        };
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

    fn handle_text(&mut self, text: &str) {
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
            "action_result" | "api_response" | "stream_end" | "stream_error" => {
                self.on_answer(id, obj, text.len(), true)
            }
            "stream_event" => self.on_answer(id, obj, text.len(), false),
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

    /// Keeps the first tabs within the bounds; the `ack` says how many were
    /// left out, and the log says it once per connection (a plugin re-sends
    /// its list at every tab change).
    fn on_tabs(&mut self, id: Option<&str>, obj: &Map<String, Value>) {
        match frames::parse_tabs(obj) {
            Ok(list) => {
                let kept = list.tabs.len();
                self.ctx.hub.set_tabs(self.client_id(), list.tabs);
                if list.dropped == 0 {
                    return self.send(frames::ack(id, json!({})));
                }
                if !std::mem::replace(&mut self.told_tabs_dropped, true) {
                    log::warn!(
                        "bridge: client {} sent more tabs than kept: {kept} kept, {} left out",
                        self.client_id(),
                        list.dropped
                    );
                }
                self.send(frames::ack(id, json!({ "tabs_kept": kept, "tabs_dropped": list.dropped })));
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
                if !self.ctx.hub.set_login_state(self.client_id(), login) {
                    let message =
                        format!("A client may report login states for at most {MAX_LOGIN_STATES} platforms.");
                    return self.send(frames::error(id, "invalid_frame", &message));
                }
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

    fn on_answer(&self, id: Option<&str>, obj: Map<String, Value>, size: usize, last: bool) {
        let Some(request_id) = obj.get("request_id").and_then(Value::as_str).map(str::to_string) else {
            return self.send(frames::error(id, "invalid_frame", "Field \"request_id\" is required."));
        };
        let streamed = obj.get("type").and_then(Value::as_str).is_some_and(|t| t.starts_with("stream_"));
        if streamed && obj.get("seq").and_then(Value::as_i64).is_none_or(|s| s < 1) {
            return self.send(frames::error(id, "invalid_frame", "Field \"seq\" must be an integer >= 1."));
        }
        let connection_id = self.client.as_ref().map(|(_, c)| c.as_str()).unwrap_or_default();
        self.ctx.hub.answer(connection_id, &request_id, Value::Object(obj), size, last);
    }
}

/// Echoing a hostile type name back is fine, but not a megabyte of it.
fn truncate(s: &str) -> String {
    crate::util::cut_chars(s, 64)
}
