//! The HTTP/1.1 transport: it owns the listening socket's accept loop, one
//! thread per connection, request-head parsing (via `httparse`), body framing
//! (Content-Length and chunked), keep-alive and pipelining, response framing
//! (fixed-length and chunked streaming), timeouts and graceful shutdown. It
//! knows nothing about routes or JSON; everything above the wire is delegated
//! to a [`Handler`]. It exists because tiny_http, which it replaces, showed
//! measured hazards: its worker pool stranded keep-alive connections that
//! arrived in a burst, it had no idle or header timeouts and no header size
//! limit (so slow or oversized clients could pin resources forever), it could
//! not close keep-alive connections on shutdown, and a single `accept()` error
//! such as EMFILE ended its accept loop for good. Here every connection gets
//! its own small thread up to a cap, every read has a deadline, every head is
//! size-limited, idle connections are closed on shutdown, and the accept loop
//! survives any error.

mod accept;
mod chunked;
mod conn;
mod pace;
mod parse;
#[cfg(test)]
mod props;
mod write;

use std::collections::BTreeMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

/// How long `shutdown` waits for the accept thread to notice the stop flag.
/// The wake-up connection makes this instantaneous in practice; the bound only
/// matters if the wake-up connection could not be made at all.
const ACCEPT_JOIN_WAIT: Duration = Duration::from_secs(2);

/// Limits and timeouts of the transport.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Connections served at once; further ones get `Handler::overloaded`.
    pub max_connections: usize,
    /// Upper bound for a request head (request line plus headers).
    pub max_header_bytes: usize,
    /// Upper bound for the number of header lines in a request head.
    pub max_headers: usize,
    /// Bodies above this are not read; the handler sees `BodyError::TooLarge`.
    pub max_body_bytes: usize,
    /// Time allowed for a connection's first byte and then its whole head,
    /// for a later head once its first byte arrived, and for a body.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Time within which a response must make progress (`pace.rs`): every
    /// 64 KiB of it, or its rest, and each streamed chunk.
    pub send_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1_048_576,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// One parsed request as handed to the [`Handler`].
#[derive(Debug)]
pub struct Request {
    /// The method as sent, e.g. `GET`.
    pub method: String,
    /// The raw request-target, e.g. `/v1/messages?limit=5`.
    pub target: String,
    /// Header names as sent; values decoded as lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// The decoded body, or why it was not read.
    pub body: Result<Vec<u8>, BodyError>,
    /// The remote address of the connection.
    pub peer: SocketAddr,
}

impl Request {
    /// The first header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Why a request body was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The body exceeds `ServerConfig::max_body_bytes`; it was not read and
    /// the connection is closed after the response.
    TooLarge,
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    /// A complete body, sent with `Content-Length`.
    Full(Vec<u8>),
    /// A body produced over time: each received `Vec<u8>` is sent as one
    /// chunk and flushed at once; dropping the sender ends the body.
    Stream(Receiver<Vec<u8>>),
    /// A complete body in parts, sent with `Content-Length` in one
    /// vectored write, never copied together: the read cache's shared page
    /// text goes out between the envelope's prefix and suffix as it is.
    Parts(Vec<Part>),
    /// The first `len` bytes of an open file, sent with `Content-Length` in
    /// pieces of 64 KiB: an artifact is never read into memory whole.
    File(std::fs::File, u64),
}

/// One part of a `Body::Parts`.
#[derive(Debug)]
pub enum Part {
    Owned(Vec<u8>),
    Shared(std::sync::Arc<str>),
}

impl Part {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Part::Owned(v) => v,
            Part::Shared(s) => s.as_bytes(),
        }
    }
}

/// A response as produced by the [`Handler`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Application headers. `Content-Length`, `Transfer-Encoding` and
    /// `Connection` are managed by the transport and ignored here.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Ask the transport to close the connection after this response.
    pub close: bool,
}

/// Failures the transport reports to the handler for rendering.
#[derive(Debug, Clone)]
pub enum TransportError {
    /// The request head or body framing was malformed.
    BadRequest(String),
    /// The request head exceeded the size or header-count limit.
    HeadersTooLarge,
    /// The handler panicked.
    Internal,
}

/// The application side of the transport.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> Response;
    /// Render a response for a request the transport could not parse or a handler panic.
    fn transport_error(&self, err: TransportError) -> Response;
    /// Render the response for a connection refused because the cap is reached.
    fn overloaded(&self) -> Response;
}

/// A running HTTP server; dropping it shuts it down with a 5 s grace period.
pub struct Server {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    accept: Mutex<Option<AcceptThread>>,
}

struct AcceptThread {
    handle: JoinHandle<()>,
    /// Disconnects when the accept thread ends, so shutdown can wait with a bound.
    done: Receiver<()>,
}

impl Server {
    /// Binds nothing itself: takes an already bound listener (the daemon binds early to report errors).
    pub fn start(
        listener: TcpListener,
        config: ServerConfig,
        handler: Arc<dyn Handler>,
    ) -> io::Result<Server> {
        let local_addr = listener.local_addr()?;
        // The accept loop relies on blocking accepts; a listener handed over
        // in non-blocking mode would turn it into a busy loop.
        listener.set_nonblocking(false)?;
        let shared = Arc::new(Shared::new(config, handler));
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let loop_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new().name("http-accept".to_string()).spawn(move || {
            let _done = done_tx;
            accept::run(listener, loop_shared);
        })?;
        Ok(Server { shared, local_addr, accept: Mutex::new(Some(AcceptThread { handle, done })) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections currently open and registered, whether busy or idle.
    /// Refused connections never count.
    pub fn active_connections(&self) -> usize {
        self.shared.state.lock().conns.len()
    }

    /// Stops accepting, closes idle connections, lets in-flight requests
    /// finish (their responses carry `Connection: close`) and waits at most
    /// `grace` for connection threads to end. Idempotent.
    pub fn shutdown(&self, grace: Duration) {
        self.shutdown_with(grace, Duration::ZERO, || {});
    }

    /// Like `shutdown`, but when only `tail` of the grace is left and
    /// requests are still in flight, calls `give_up` first: requests that
    /// wait on something outside the server (a plugin's answer) are told to
    /// stop waiting, so that they answer (503 `shutting_down`) instead of
    /// being cut off without a response when the grace runs out.
    pub fn shutdown_with(&self, grace: Duration, tail: Duration, give_up: impl FnOnce()) {
        if self.shared.finished.load(Ordering::Acquire) {
            return;
        }
        let deadline = Instant::now() + grace;
        self.shared.begin_shutdown();
        self.stop_accepting();
        if !self.shared.wait_for_connections(deadline.checked_sub(tail).unwrap_or(deadline), false) {
            give_up();
        }
        self.shared.wait_for_connections(deadline, true);
        self.shared.finished.store(true, Ordering::Release);
    }

    fn stop_accepting(&self) {
        let Some(accept) = self.accept.lock().take() else {
            return;
        };
        // A blocked accept() only returns when a connection arrives, so make
        // one; the loop sees the stop flag and drops the listener.
        let wake = wake_address(self.local_addr);
        if let Err(err) = TcpStream::connect_timeout(&wake, Duration::from_secs(1)) {
            log::warn!("http: could not wake the accept loop via {wake}: {err}");
        }
        match accept.done.recv_timeout(ACCEPT_JOIN_WAIT) {
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                if let Err(panic) = accept.handle.join() {
                    log::error!("http: the accept thread panicked");
                    std::panic::resume_unwind(panic);
                }
            }
            _ => log::error!("http: the accept thread did not stop; leaving it behind"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5))
    }
}

/// The address the server connects to itself to wake its accept loop: a
/// wildcard bind is reachable via the loopback address of the same family.
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let mut wake = addr;
    if wake.ip().is_unspecified() {
        let loopback: std::net::IpAddr = match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        wake.set_ip(loopback);
    }
    wake
}

/// State shared by the server handle, the accept loop and connection threads.
struct Shared {
    config: ServerConfig,
    handler: Arc<dyn Handler>,
    /// Lock-free copy of `State::stopping` for hot-path checks.
    stopping: AtomicBool,
    /// Set once a shutdown has completed, making later calls no-ops.
    finished: AtomicBool,
    state: Mutex<State>,
    /// Notified whenever a connection unregisters.
    changed: Condvar,
    /// Never carries a message; it disconnects when shutdown begins, which
    /// wakes streaming responses blocked in `select!`.
    stop_rx: Receiver<()>,
    stop_tx: Mutex<Option<Sender<()>>>,
}

struct State {
    stopping: bool,
    next_id: u64,
    /// By id, which is the order of accept: the first entry not `Busy` is
    /// the one to close when the cap is reached.
    conns: BTreeMap<u64, Entry>,
}

/// A registered connection: a clone of its socket so shutdown (or a newer
/// connection, at the cap) can close it from outside, and where it is.
struct Entry {
    stream: TcpStream,
    phase: Phase,
}

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Receiving a request's head or body.
    Reading,
    /// Its request is being handled or answered.
    Busy,
}

/// Why the accept loop could not hand a connection to a thread.
enum Refusal {
    Full,
    Stopping,
    Clone(io::Error),
}

/// A registered connection, and the one closed to make room for it.
struct Registered {
    id: u64,
    evicted: Option<SocketAddr>,
}

impl Shared {
    fn new(config: ServerConfig, handler: Arc<dyn Handler>) -> Shared {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        Shared {
            config,
            handler,
            stopping: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            state: Mutex::new(State { stopping: false, next_id: 0, conns: BTreeMap::new() }),
            changed: Condvar::new(),
            stop_rx,
            stop_tx: Mutex::new(Some(stop_tx)),
        }
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Registers a new connection as idle unless the server is stopping.
    /// At the cap, the oldest connection that is not answering a request
    /// (idle, or still sending its head or body) is closed to make room, so
    /// silent or dripping sockets cannot lock new clients out; only when
    /// every connection is busy with a request is the new one refused.
    fn register(&self, stream: &TcpStream) -> Result<Registered, Refusal> {
        // Cloned before the lock: the registry's lock holds no system call
        // that could wait (`shutdown` does not).
        let clone = stream.try_clone().map_err(Refusal::Clone)?;
        let mut state = self.state.lock();
        if state.stopping {
            return Err(Refusal::Stopping);
        }
        let mut evicted = None;
        if state.conns.len() >= self.config.max_connections {
            let oldest = state.conns.iter().find(|(_, e)| e.phase != Phase::Busy).map(|(id, _)| *id);
            let entry = oldest.and_then(|id| state.conns.remove(&id)).ok_or(Refusal::Full)?;
            // Its thread sees end-of-stream and ends; it is no longer counted.
            let _ = entry.stream.shutdown(Shutdown::Both);
            evicted = entry.stream.peer_addr().ok();
        }
        let id = state.next_id;
        state.next_id += 1;
        state.conns.insert(id, Entry { stream: clone, phase: Phase::Idle });
        Ok(Registered { id, evicted })
    }

    /// Removes a connection and returns its socket clone.
    fn unregister(&self, id: u64) -> Option<TcpStream> {
        let entry = self.state.lock().conns.remove(&id);
        self.changed.notify_all();
        entry.map(|e| e.stream)
    }

    /// Marks a connection as waiting for its next request. Returns false when
    /// the server is stopping, or the connection was closed to make room for
    /// a newer one, in which case it should close now: shutdown has already
    /// passed over it (or will find it busy).
    fn mark_idle(&self, id: u64) -> bool {
        let mut state = self.state.lock();
        if state.stopping {
            return false;
        }
        match state.conns.get_mut(&id) {
            Some(entry) => {
                entry.phase = Phase::Idle;
                true
            }
            None => false,
        }
    }

    fn mark(&self, id: u64, phase: Phase) {
        if let Some(entry) = self.state.lock().conns.get_mut(&id) {
            entry.phase = phase;
        }
    }

    /// Sets the stop flag and closes the read side of idle connections, which
    /// wakes their threads with EOF. Busy connections finish their request.
    fn begin_shutdown(&self) {
        let mut state = self.state.lock();
        state.stopping = true;
        self.stopping.store(true, Ordering::Release);
        for entry in state.conns.values().filter(|e| e.phase == Phase::Idle) {
            // Errors only mean the peer is already gone.
            let _ = entry.stream.shutdown(Shutdown::Read);
        }
        drop(state);
        self.stop_tx.lock().take();
    }

    /// Waits until every connection is closed or `deadline`; returns whether
    /// they all closed. With `close_rest`, the ones still open are cut, so
    /// their threads end soon after.
    fn wait_for_connections(&self, deadline: Instant, close_rest: bool) -> bool {
        let mut state = self.state.lock();
        while !state.conns.is_empty() {
            if self.changed.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        if state.conns.is_empty() {
            return true;
        }
        if !close_rest {
            return false;
        }
        let busy = state.conns.len();
        for entry in state.conns.values() {
            let _ = entry.stream.shutdown(Shutdown::Both);
        }
        drop(state);
        log::warn!("http: {busy} connection(s) still busy after the shutdown grace period; closed");
        false
    }
}
