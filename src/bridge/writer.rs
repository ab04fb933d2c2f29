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
//! The reader's `WebSocket` still wants to write pong and close replies on
//! its own; it is given a `ConnStream` whose writes are forwarded here as raw
//! bytes. tungstenite hands each write a buffer of whole frames, so those
//! bytes too arrive here as complete frames.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::{Frame, Utf8Bytes};
use tungstenite::protocol::CloseFrame;

/// Frames queued for one connection before it counts as too slow. A
/// bounded crossbeam channel allocates and touches every slot up front, so
/// this is also per-connection memory (256 × 40 bytes); 4096 cost 164 kB of
/// resident memory per idle plugin.
pub const OUTBOX_CAPACITY: usize = 256;

/// What can be queued to a connection's writer.
#[derive(Debug)]
pub enum Out {
    /// A JSON text frame.
    Text(String),
    /// Already-framed bytes from the reader's WebSocket (pong, close reply).
    Raw(Vec<u8>),
    /// Send a close frame, then end the connection.
    Close { code: u16, reason: String },
    /// A frame that can only be built later, e.g. the `ack` of a final
    /// message, which may go out only after its commit. The writer runs it
    /// in queue order (so answers keep the order of the frames they answer)
    /// and sends the frame it returns, if any; the reader meanwhile goes on
    /// reading, which lets one connection's messages share group commits.
    Deferred(Deferred),
}

/// Produces a frame once something it waits for is ready.
pub struct Deferred(pub Box<dyn FnOnce() -> Option<String> + Send>);

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

/// The reader's stream: reads from the socket, forwards writes to the writer.
pub struct ConnStream {
    pub tcp: TcpStream,
    /// `None` during the handshake, which writes its HTTP answer directly.
    pub forward: Option<Sender<Out>>,
}

impl Read for ConnStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl Write for ConnStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.forward {
            Some(tx) => tx
                .try_send(Out::Raw(buf.to_vec()))
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
        .spawn(move || Writer { tcp, heartbeat }.run(rx))
}

struct Writer {
    tcp: TcpStream,
    heartbeat: Duration,
}

impl Writer {
    fn run(mut self, rx: Receiver<Out>) {
        let mut next_ping = Instant::now() + self.heartbeat;
        let mut buf = Vec::with_capacity(256);
        loop {
            let out = match rx.recv_deadline(next_ping) {
                Ok(out) => out,
                Err(RecvTimeoutError::Timeout) => {
                    next_ping = Instant::now() + self.heartbeat;
                    if self.send(Frame::ping(Vec::new()), &mut buf).is_err() {
                        break;
                    }
                    continue;
                }
                // Everyone who could send is gone: the connection is over.
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let result = match out {
                Out::Text(text) => self.send(Frame::message(text, OpCode::Data(Data::Text), true), &mut buf),
                Out::Raw(bytes) => self.tcp.write_all(&bytes),
                Out::Deferred(Deferred(produce)) => match produce() {
                    Some(text) => self.send(Frame::message(text, OpCode::Data(Data::Text), true), &mut buf),
                    None => Ok(()),
                },
                Out::Close { code, reason } => {
                    let close = CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason) };
                    let _ = self.send(Frame::close(Some(close)), &mut buf);
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

    fn send(&mut self, frame: Frame, buf: &mut Vec<u8>) -> io::Result<()> {
        buf.clear();
        frame.format(buf).map_err(|e| io::Error::other(e.to_string()))?;
        self.tcp.write_all(buf)
    }
}
