//! The write side of one plugin connection. tungstenite reads and writes
//! through the same `&mut WebSocket`, so a thread blocked in `read()` cannot
//! push a frame. Each connection therefore has two threads: the reader owns
//! the `WebSocket` and blocks in `read()`; this writer thread owns a clone of
//! the TCP socket and is the only one that ever writes to it. Everyone else
//! (the reader's acks, the hub's requests, state pushes) hands it an `Out`
//! through a bounded channel, so frames go out promptly, whole, in order,
//! and two frames can never interleave on the wire. The writer also sends the
//! heartbeat pings, waiting on its inbox with a deadline instead of polling.
//!
//! Answers to the plugin's frames keep the order of the frames they answer,
//! and the ack of a final message goes out only after its commit; frames
//! the daemon starts (requests, state pushes) do not queue behind those
//! commits. While a plugin pipelines a backlog of messages, a delivery
//! request would otherwise wait for every commit ahead of it in the queue
//! (it starved the dispatcher during ingest, docs/BENCHMARKS_RUNTIME.md).
//!
//! The reader's `WebSocket` still wants to write pong and close replies on
//! its own; it is given a `ConnStream` whose writes are forwarded here as raw
//! bytes. tungstenite hands each write a buffer of whole frames, so those
//! bytes too arrive here as complete frames.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvError, Select, Sender};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{Frame, Utf8Bytes};
use tungstenite::protocol::CloseFrame;

/// Frames queued for one connection before it counts as too slow. A
/// bounded crossbeam channel allocates and touches every slot up front, so
/// this is also per-connection memory (256 × 40 bytes); 4096 cost 164 kB of
/// resident memory per idle plugin.
pub const OUTBOX_CAPACITY: usize = 256;

use crate::store::{IngestOutcome, StoreError};

/// Answers waiting for their commit, most per connection; beyond this the
/// writer stops taking from its inbox, which fills and makes the reader
/// wait (backpressure on a plugin that sends faster than the store
/// commits).
const MAX_WAITING: usize = 1024;

/// How long a closing connection waits for the client's side of the close.
const LINGER: Duration = Duration::from_secs(1);

/// How long the writer may spend blocked on the socket while frames wait
/// in the outbox (the clock starts over whenever the outbox is seen empty).
/// A plugin that takes longer to catch up is disconnected, and so marked
/// lost: this is what bounds a full outbox's life (docs/BRIDGE.md).
pub const STALL_BUDGET: Duration = Duration::from_secs(10);

/// What can be queued to a connection's writer.
#[derive(Debug)]
pub enum Out {
    /// A JSON text frame answering a frame of the plugin: sent in order
    /// with the other answers, after any `Deferred` queued before it.
    Text(String),
    /// A JSON text frame the daemon starts (a request, a state push): sent
    /// as soon as the writer takes it, ahead of answers still waiting.
    Push(String),
    /// Already-framed bytes from the reader's WebSocket (pong, close reply).
    Raw(Vec<u8>),
    /// Send a close frame, then end the connection.
    Close { code: u16, reason: String },
    /// The `ack` of a final message, which may go out only after its
    /// commit. The reader meanwhile goes on reading, which lets one
    /// connection's messages share group commits.
    Deferred(Deferred),
}

/// A frame built from the store's answer once it arrives.
pub struct Deferred {
    pub answer: Receiver<Result<IngestOutcome, StoreError>>,
    pub render: Box<dyn FnOnce(Result<IngestOutcome, StoreError>) -> Option<String> + Send>,
}

/// An answer in line: ready now, or waiting for the store.
enum InLine {
    Ready(String),
    Waiting(Deferred),
}

/// What woke the writer. (`Answered` is large and frequent: not boxed.)
#[allow(clippy::large_enum_variant)]
enum Event {
    Heartbeat,
    Answered(Result<IngestOutcome, StoreError>),
    Inbox(Result<Out, RecvError>),
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

/// The reader's stream: reads from the socket, forwards writes to the writer.
pub struct ConnStream {
    pub tcp: TcpStream,
    /// `None` until the writer runs; writes then go to the socket directly.
    pub forward: Option<Sender<Out>>,
    /// Until the hello: when it must have arrived. Every read waits at most
    /// until then, so a frame dripped byte by byte cannot stretch it.
    pub deadline: Option<Instant>,
}

impl Read for ConnStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.tcp.set_read_timeout(Some(left))?;
        }
        self.tcp.read(buf)
    }
}

impl Write for ConnStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // What tungstenite writes itself (pongs, the close reply) waits for
        // room like every other frame (backpressure): a burst of pings must
        // not cost a client that reads its answers the connection. A client
        // that stops reading ends the writer (its stall budget), and then
        // this fails at once.
        match &self.forward {
            Some(tx) => tx
                .send(Out::Raw(buf.to_vec()))
                .map(|()| buf.len())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection writer is gone")),
            None => self.tcp.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.forward {
            Some(_) => Ok(()),
            None => self.tcp.flush(),
        }
    }
}

pub fn spawn(tcp: TcpStream, rx: Receiver<Out>, heartbeat: Duration) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ws-write".into())
        .stack_size(64 * 1024)
        .spawn(move || Writer { tcp, heartbeat, stalled: Duration::ZERO, armed: None }.run(rx))
}

struct Writer {
    tcp: TcpStream,
    heartbeat: Duration,
    /// Time spent in socket writes since the outbox was last seen empty.
    stalled: Duration,
    /// The socket's write timeout as last set.
    armed: Option<Duration>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Out>) {
        let mut next_ping = Instant::now() + self.heartbeat;
        let mut buf = Vec::with_capacity(256);
        let mut line: VecDeque<InLine> = VecDeque::new();
        loop {
            let event = next_event(&rx, &line, next_ping);
            if rx.is_empty() {
                // Caught up: whatever the socket took before is forgiven.
                self.stalled = Duration::ZERO;
            }
            let result = match event {
                Event::Heartbeat => {
                    next_ping = Instant::now() + self.heartbeat;
                    self.send(Frame::ping(Vec::new()), &mut buf)
                }
                Event::Answered(result) => {
                    let Some(InLine::Waiting(d)) = line.pop_front() else {
                        unreachable!("the head was waiting")
                    };
                    let sent = self.send_text((d.render)(result), &mut buf);
                    sent.and_then(|()| self.send_ready(&mut line, &mut buf))
                }
                Event::Inbox(Ok(Out::Deferred(d))) => {
                    line.push_back(InLine::Waiting(d));
                    Ok(())
                }
                Event::Inbox(Ok(Out::Text(text))) if !line.is_empty() => {
                    line.push_back(InLine::Ready(text));
                    Ok(())
                }
                Event::Inbox(Ok(Out::Text(text) | Out::Push(text))) => self.send_text(Some(text), &mut buf),
                Event::Inbox(Ok(Out::Raw(bytes))) => self.put(&bytes),
                Event::Inbox(Ok(Out::Close { code, reason })) => {
                    // Answers already promised go out before the close.
                    let _ = self.drain(&mut line, &mut buf);
                    let close = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason) };
                    if self.send(Frame::close(Some(close)), &mut buf).is_ok() {
                        self.linger();
                    }
                    break;
                }
                // Everyone who could send is gone: the connection is over
                // (the reader's last act may have been the echo of the
                // client's Close, queued just before).
                Event::Inbox(Err(RecvError)) => {
                    if self.drain(&mut line, &mut buf).is_ok() {
                        self.linger();
                    }
                    break;
                }
            };
            if let Err(e) = result {
                log::debug!("bridge: write failed, ending connection: {e}");
                break;
            }
        }
        // Ends the reader's blocking read too: it sees end-of-stream and
        // cleans the connection up.
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    /// After the last frame: half-close, and read what the client still
    /// sends (its Close, the rest of an oversized frame) for a moment, so
    /// the close does not become a reset that destroys the close frame —
    /// the client reads the code instead of a broken pipe.
    fn linger(&self) {
        super::upgrade::linger(&self.tcp, LINGER);
    }

    /// Sends the ready answers at the head of the line.
    fn send_ready(&mut self, line: &mut VecDeque<InLine>, buf: &mut Vec<u8>) -> io::Result<()> {
        while let Some(InLine::Ready(_)) = line.front() {
            let Some(InLine::Ready(text)) = line.pop_front() else { unreachable!() };
            self.send_text(Some(text), buf)?;
        }
        Ok(())
    }

    /// Sends every answer in line, waiting for the store where needed.
    fn drain(&mut self, line: &mut VecDeque<InLine>, buf: &mut Vec<u8>) -> io::Result<()> {
        while let Some(item) = line.pop_front() {
            let text = match item {
                InLine::Ready(text) => Some(text),
                InLine::Waiting(d) => (d.render)(d.answer.recv().unwrap_or(Err(StoreError::Closed))),
            };
            self.send_text(text, buf)?;
        }
        Ok(())
    }

    fn send_text(&mut self, text: Option<String>, buf: &mut Vec<u8>) -> io::Result<()> {
        match text {
            Some(text) => self.send(Frame::message(text, OpCode::Data(Data::Text), true), buf),
            None => Ok(()),
        }
    }

    fn send(&mut self, frame: Frame, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        frame.format(buf).map_err(|e| io::Error::other(e.to_string()))?;
        let bytes = std::mem::take(buf);
        let result = self.put(&bytes);
        *buf = bytes;
        result
    }

    /// `write_all` within what is left of `STALL_BUDGET`: the time blocked
    /// in the socket counts, whatever progress each call makes (a plugin
    /// reading a trickle would defeat a timeout per call).
    fn put(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let left = STALL_BUDGET.saturating_sub(self.stalled);
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the plugin stopped taking frames"));
            }
            self.arm(left)?;
            let started = Instant::now();
            let written = self.tcp.write(bytes);
            self.stalled += started.elapsed();
            match written {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "the plugin stopped taking frames"))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes the next write return within `left` (a little later at most):
    /// the timeout already set is kept when it is close, so a plugin that
    /// keeps up costs no system call per frame.
    fn arm(&mut self, left: Duration) -> io::Result<()> {
        let slack = Duration::from_millis(10);
        if self.armed.is_some_and(|set| set <= left + slack && set * 2 >= left) {
            return Ok(());
        }
        self.tcp.set_write_timeout(Some(left))?;
        self.armed = Some(left);
        Ok(())
    }
}

/// Waits for whichever comes first: the store's answer for the head of the
/// line, a new frame in the inbox (unless the line is full), or the next
/// heartbeat. Only the head is watched, so answers keep their order.
fn next_event(rx: &Receiver<Out>, line: &VecDeque<InLine>, heartbeat_at: Instant) -> Event {
    let mut sel = Select::new();
    let inbox = (line.len() < MAX_WAITING).then(|| sel.recv(rx));
    let head = match line.front() {
        Some(InLine::Waiting(d)) => Some((sel.recv(&d.answer), &d.answer)),
        _ => None,
    };
    match sel.select_deadline(heartbeat_at) {
        Err(_) => Event::Heartbeat,
        Ok(op) => match head {
            Some((index, answer)) if op.index() == index => {
                Event::Answered(op.recv(answer).unwrap_or(Err(StoreError::Closed)))
            }
            _ => {
                debug_assert_eq!(Some(op.index()), inbox);
                Event::Inbox(op.recv(rx))
            }
        },
    }
}
