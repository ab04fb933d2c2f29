//! One connection, from `hello` to close.
//!
//! Design: a single thread owns the socket. tungstenite needs `&mut` for
//! both reading and writing, so instead of splitting the socket, the loop
//! reads with a socket read timeout and does its writing between reads:
//! - delay 0 (the hot path): a request is answered inline, right after it
//!   is read: one write + flush, no timers, no channel, no other thread;
//! - `--delay-ms N`: the answer is built at once and queued with its due
//!   time. The delay is the same for every request, so the queue is already
//!   in due order (FIFO). Before each read the loop sends what is due and
//!   shortens the read timeout to the next due time, so answers leave on
//!   time while reading goes on (pings get their pongs, other requests are
//!   taken in) — a delay never blocks reading. Answers leave within the
//!   OS timer granularity of their due time (a few ms; never early).
//!
//! Every way out of the loop is an `End`, carried through `Err` so `?`
//! unwinds from wherever the session decides to stop.

use crate::cli::Options;
use crate::feed::Feed;
use crate::frames::{self, FINAL_MESSAGE_ID};
use crate::output::Output;
use crate::signal;
use baa_conductor::bridge::plugin_answers::Answerer;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Error, Message, WebSocket};

/// How the session ended; `main` turns it into the exit status.
pub enum End {
    /// The daemon closed the connection: "CODE REASON".
    Closed(String),
    /// Ctrl-C or SIGTERM.
    Stopped,
    /// `--exit-after-message` got its ack.
    Acked,
    Failed(String),
}

type Step = Result<(), End>;

/// Longest a read blocks when nothing is due: only bounds how late a stop
/// request is noticed on systems where a signal does not interrupt reads.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// std refuses a zero read timeout (to the OS it would mean "forever").
const MIN_WAIT: Duration = Duration::from_millis(1);
const HELLO_ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the other side's half of a close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

pub struct Session<'a> {
    ws: WebSocket<TcpStream>,
    opts: &'a Options,
    out: &'a mut Output,
    /// Answers held back by `--delay-ms`, with their due time.
    delayed: VecDeque<(Instant, Vec<String>)>,
    /// The timeout last set on the socket, to skip redundant syscalls.
    read_timeout: Option<Duration>,
    /// Our final message was sent and neither acked nor rejected yet.
    awaiting_ack: bool,
    /// `--messages-file`, while it is being replayed.
    feed: Option<Feed>,
}

impl<'a> Session<'a> {
    pub fn new(ws: WebSocket<TcpStream>, opts: &'a Options, out: &'a mut Output) -> Self {
        Session {
            ws,
            opts,
            out,
            delayed: VecDeque::new(),
            read_timeout: None,
            awaiting_ack: false,
            feed: None,
        }
    }

    pub fn run(mut self) -> End {
        if let Err(end) = self.start() {
            return end;
        }
        loop {
            if let Err(end) = self.turn() {
                return end;
            }
        }
    }

    fn start(&mut self) -> Step {
        let hello = frames::to_wire(&frames::hello(self.opts));
        self.send_texts(&[hello])?;
        self.await_hello_ack()?;
        self.announce()?;
        if let Some(path) = &self.opts.messages_file {
            self.feed = Some(Feed::open(path).map_err(End::Failed)?);
        }
        self.feed_more()
    }

    /// Sends what the `--messages-file` window has room for; reports the
    /// replay once every line is answered.
    fn feed_more(&mut self) -> Step {
        let Some(feed) = self.feed.as_mut() else { return Ok(()) };
        let frames = feed.next_frames().map_err(End::Failed)?;
        if feed.finished() {
            let summary = feed.summary();
            self.feed = None;
            self.out.status(&summary);
        }
        if frames.is_empty() {
            return Ok(());
        }
        self.send_texts(&frames)
    }

    /// An ack or error for a `--messages-file` line: one more may go.
    fn fed(&mut self, frame: &Value, ok: bool) -> Option<Step> {
        let feed = self.feed.as_mut()?;
        feed.answered(frame, ok).then(|| self.feed_more())
    }

    /// One read, and whatever it calls for.
    fn turn(&mut self) -> Step {
        self.check_stop()?;
        self.send_due()?;
        self.set_read_timeout(self.next_wait());
        let result = match self.ws.read() {
            Ok(message) => self.on_message(message),
            Err(e) if is_idle(&e) => Ok(()),
            Err(e) => Err(lost(e)),
        };
        self.out.flush();
        result
    }

    // ---- start-up ----

    fn await_hello_ack(&mut self) -> Step {
        let deadline = Instant::now() + HELLO_ACK_TIMEOUT;
        loop {
            self.check_stop()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(End::Failed(format!("no hello_ack within {HELLO_ACK_TIMEOUT:?}")));
            }
            self.set_read_timeout(left.clamp(MIN_WAIT, IDLE_POLL));
            match self.ws.read() {
                Ok(Message::Text(text)) => return self.check_hello_ack(&text),
                Ok(Message::Close(frame)) => {
                    let why = format!("closed before hello_ack: {}", describe_close(&frame));
                    return Err(End::Failed(why));
                }
                Ok(other) => self.on_control(&other),
                Err(e) if is_idle(&e) => self.out.flush(),
                Err(e) => return Err(End::Failed(format!("before hello_ack: {}", describe(e)))),
            }
        }
    }

    /// The first answer must be `hello_ack`; anything else (an `error`
    /// naming a bad hello, usually) ends the run.
    fn check_hello_ack(&mut self, text: &str) -> Step {
        self.out.received(text);
        let frame: Option<Value> = serde_json::from_str(text).ok();
        if frame.as_ref().and_then(|f| f["type"].as_str()) == Some("hello_ack") {
            return Ok(());
        }
        self.close_ours("expected hello_ack");
        Err(End::Failed(format!("expected hello_ack, got: {text}")))
    }

    /// tabs, login states, then the final message, in that order: the
    /// message's link should find the tab already known.
    fn announce(&mut self) -> Step {
        let opts = self.opts;
        let mut out: Vec<Value> = Vec::new();
        if !opts.tabs.is_empty() {
            out.push(frames::tabs(&opts.tabs));
        }
        out.extend(opts.logins.iter().map(|p| frames::login_state(p)));
        if let Some(text) = &opts.message {
            out.push(frames::final_message(opts, text));
            self.awaiting_ack = true;
        }
        let texts: Vec<String> = out.iter().map(frames::to_wire).collect();
        self.send_texts(&texts)
    }

    // ---- incoming ----

    fn on_message(&mut self, message: Message) -> Step {
        match message {
            Message::Text(text) => self.on_text(&text),
            Message::Close(frame) => Err(self.on_close(&frame)),
            other => {
                self.on_control(&other);
                Ok(())
            }
        }
    }

    /// Pongs to pings are queued by tungstenite and go out on the next read.
    fn on_control(&mut self, message: &Message) {
        match message {
            Message::Ping(_) => self.out.note("<-", "ping"),
            Message::Pong(_) => self.out.note("<-", "pong"),
            Message::Binary(b) => self.out.error(&format!("unexpected binary frame ({} bytes)", b.len())),
            _ => {}
        }
    }

    fn on_text(&mut self, text: &str) -> Step {
        self.out.received(text);
        let frame: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.out.error(&format!("frame is not JSON ({e}): {text}"));
                return Ok(());
            }
        };
        match frame["type"].as_str().unwrap_or_default() {
            "proxy_delivery" | "action" | "api_request" => self.on_request(&frame),
            "ack" => self.on_ack(&frame, text),
            "error" => self.on_error_frame(&frame, text),
            // hello_ack, state_snapshot, pong, anything new: shown, nothing to do.
            _ => Ok(()),
        }
    }

    fn on_request(&mut self, request: &Value) -> Step {
        self.count_request(request);
        let responder = Answerer {
            client_id: Some(&self.opts.client_id),
            default_platform: Some(self.opts.first_platform()),
            mode: &self.opts.mode,
        };
        let texts: Vec<String> = match responder.answer(request) {
            Ok(answer) if answer.is_empty() => return Ok(()), // silent
            Ok(answer) => answer.iter().map(frames::to_wire).collect(),
            Err(why) => {
                self.out.error(&why);
                return Ok(());
            }
        };
        if self.opts.delay.is_zero() {
            return self.send_answer(&texts);
        }
        let due = Instant::now() + self.opts.delay;
        self.delayed.push_back((due, texts));
        Ok(())
    }

    fn count_request(&mut self, request: &Value) {
        let stats = &mut self.out.stats;
        match request["type"].as_str() {
            Some("proxy_delivery") => stats.proxy_deliveries += 1,
            Some("action") => stats.actions += 1,
            _ => stats.api_requests += 1,
        }
    }

    fn on_ack(&mut self, frame: &Value, text: &str) -> Step {
        if let Some(step) = self.fed(frame, true) {
            return step;
        }
        if !self.answers_our_message(frame) {
            return Ok(());
        }
        self.awaiting_ack = false;
        if self.out.quiet() {
            self.out.status(&format!("ack: {text}"));
        }
        if self.opts.exit_after_message {
            self.close_ours("message acknowledged");
            return Err(End::Acked);
        }
        Ok(())
    }

    fn on_error_frame(&mut self, frame: &Value, text: &str) -> Step {
        self.out.stats.error_frames += 1;
        if self.out.quiet() {
            self.out.error(&format!("error frame: {text}"));
        }
        if let Some(step) = self.fed(frame, false) {
            return step;
        }
        if !self.answers_our_message(frame) {
            return Ok(());
        }
        self.awaiting_ack = false;
        if self.opts.exit_after_message {
            self.close_ours("message rejected");
            let why = format!("the daemon rejected the message: {text}");
            return Err(End::Failed(why));
        }
        Ok(())
    }

    fn answers_our_message(&self, frame: &Value) -> bool {
        self.awaiting_ack && frame["id"] == FINAL_MESSAGE_ID
    }

    // ---- outgoing ----

    fn send_answer(&mut self, texts: &[String]) -> Step {
        self.out.stats.answered += 1;
        self.send_texts(texts)
    }

    /// All frames of one answer, then a single flush (a stream of N events
    /// is one syscall when it fits the buffer).
    fn send_texts(&mut self, texts: &[String]) -> Step {
        for text in texts {
            self.ws
                .write(Message::text(text.as_str()))
                .map_err(|e| End::Failed(format!("send failed: {}", describe(e))))?;
            self.out.sent(text);
        }
        self.ws.flush().map_err(|e| End::Failed(format!("send failed: {}", describe(e))))
    }

    fn send_due(&mut self) -> Step {
        let now = Instant::now();
        while self.delayed.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, texts)) = self.delayed.pop_front() {
                self.send_answer(&texts)?;
            }
        }
        Ok(())
    }

    fn next_wait(&self) -> Duration {
        match self.delayed.front() {
            Some((due, _)) => due.saturating_duration_since(Instant::now()).clamp(MIN_WAIT, IDLE_POLL),
            None => IDLE_POLL,
        }
    }

    fn set_read_timeout(&mut self, wait: Duration) {
        if self.read_timeout != Some(wait) {
            // Cannot fail for a non-zero duration on a connected socket.
            let _ = self.ws.get_mut().set_read_timeout(Some(wait));
            self.read_timeout = Some(wait);
        }
    }

    // ---- closing ----

    fn check_stop(&mut self) -> Step {
        if signal::stop_requested() {
            self.close_ours("simulator stopped");
            return Err(End::Stopped);
        }
        Ok(())
    }

    fn on_close(&mut self, frame: &Option<CloseFrame>) -> End {
        let desc = describe_close(frame);
        self.out.note("<-", &format!("close {desc}"));
        // tungstenite has queued our close reply; reading flushes it and
        // then sees the daemon drop the TCP connection.
        self.drain();
        if self.awaiting_ack && self.opts.exit_after_message {
            return End::Failed(format!("closed ({desc}) before the message was acked"));
        }
        End::Closed(desc)
    }

    /// Best effort: start the close handshake and give the daemon a moment
    /// to answer it, so it sees a clean disconnect rather than a reset.
    fn close_ours(&mut self, reason: &str) {
        let frame = CloseFrame { code: CloseCode::Normal, reason: reason.into() };
        if self.ws.close(Some(frame)).is_ok() {
            self.out.note("->", &format!("close 1000 {reason}"));
            self.drain();
        }
    }

    /// Read until the connection is gone or `CLOSE_GRACE` passes; frames
    /// still in flight are shown but no longer answered.
    fn drain(&mut self) {
        let deadline = Instant::now() + CLOSE_GRACE;
        while Instant::now() < deadline {
            self.set_read_timeout(IDLE_POLL);
            match self.ws.read() {
                Ok(Message::Text(text)) => self.out.received(&text),
                Ok(_) => {}
                Err(e) if is_idle(&e) => {}
                Err(_) => break,
            }
        }
        self.out.flush();
    }
}

/// A read that timed out or was interrupted by a signal: nothing was
/// consumed, tungstenite keeps any partial frame, just read again.
fn is_idle(e: &Error) -> bool {
    matches!(e, Error::Io(io) if matches!(
        io.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    ))
}

fn lost(e: Error) -> End {
    End::Failed(describe(e))
}

fn describe(e: Error) -> String {
    match e {
        Error::ConnectionClosed | Error::AlreadyClosed => "connection closed".to_string(),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "the daemon dropped the connection without a close frame".to_string()
        }
        other => format!("connection error: {other}"),
    }
}

/// "4000 replaced", the way `closed:` prints it.
fn describe_close(frame: &Option<CloseFrame>) -> String {
    match frame {
        Some(f) => format!("{} {}", u16::from(f.code), f.reason).trim_end().to_string(),
        None => "1005 (no status)".to_string(),
    }
}
