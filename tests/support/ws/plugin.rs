//! [`Plugin`]: a connected, introduced client moved onto its own thread,
//! so a test can block in an HTTP call while "the plugin" receives the
//! daemon's requests and answers them, automatically through a
//! [`Responder`] or frame by frame on the test's command. The automatic
//! answers ([`answer_ok`], [`answer_status`]) are the simulator's, from
//! `baa_conductor::bridge::plugin_answers`, so tests and simulator answer
//! alike.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use baa_conductor::bridge::plugin_answers::{Answerer, Mode};
use crossbeam_channel::{unbounded, Receiver, Sender};
use serde_json::{json, Value};

use super::{connect, Event, WsClient};
use crate::support::now_ms;

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

/// The simulator's `--mode succeed`: `api_response` 200 whose body names
/// the request's method and path (for a streamed `api_request`, 3
/// `stream_event`s and `stream_end` 200), `action_result` success for an
/// `action` / `proxy_delivery`.
pub fn answer_ok(request: &Value) -> Vec<Value> {
    answer(&Mode::Succeed, request)
}

/// The simulator's `--mode http:STATUS`: every request answered with the
/// upstream status `status` (`api_response`, `stream_end`, or an
/// `action_result`'s `http_status`).
pub fn answer_status(status: u16) -> Responder {
    Box::new(move |request: &Value| answer(&Mode::Http(status), request))
}

/// The answer to `request`, or none when it is not a request.
fn answer(mode: &Mode, request: &Value) -> Vec<Value> {
    Answerer { client_id: None, default_platform: None, mode }.answer(request).unwrap_or_default()
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
