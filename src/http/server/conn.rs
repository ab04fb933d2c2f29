//! One connection's life: wait for a request (idle timeout), read its head
//! (header timeout, size limits) and body, call the handler, write the
//! response, and repeat for keep-alive and pipelined requests. Every read has
//! a deadline, so no client can hold a thread longer than the configured
//! timeouts allow; bytes read past one request stay buffered for the next.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chunked::{self, BodyRead};
use super::pace::Paced;
use super::parse::{self, Framing, Head, Parsed};
use super::write::{self, Options};
use super::{BodyError, Phase, Request, Response, Shared, TransportError};

/// Bytes asked of the socket per read when nothing more specific is known.
const READ_CHUNK: usize = 16 * 1024;

/// How much later than its deadline a read may give up: a read timeout
/// already set on the socket is reused when it is at most this much longer
/// than needed (`Conn::wait_at_most`).
const TIMEOUT_SLACK: Duration = Duration::from_millis(10);

/// Upper bound of a single read when a larger body is expected.
const MAX_READ: usize = 1024 * 1024;

/// How long a closing connection keeps reading (and discarding) after its
/// last response. Closing a socket with unread input makes the kernel send a
/// reset, which can destroy the response before the client has read it.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 2 * 1024 * 1024;

/// How a connection ends.
enum Ending {
    /// Nothing is owed to the peer: timeout, EOF or a broken socket.
    Quiet,
    /// A response was written and the peer may still be sending.
    Linger,
}

/// Outcome of one socket read.
enum Fill {
    Data,
    Eof,
    Timeout,
    Failed(io::Error),
}

impl chunked::Input for Conn<'_> {
    fn buffered(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn fill(&mut self, deadline: Instant, want: usize) -> bool {
        matches!(Conn::fill(self, deadline, want), Fill::Data)
    }
}

/// Entry point of an `http-conn` thread.
pub(super) fn run(shared: Arc<Shared>, id: u64, stream: TcpStream, peer: SocketAddr) {
    // Unregisters even if this thread unwinds.
    let _registration = Registration { shared: &shared, id };
    let send_timeout = at_least_1ms(shared.config.send_timeout);
    let mut conn = Conn {
        shared: &shared,
        id,
        stream,
        peer,
        buf: Vec::new(),
        scratch: Vec::new(),
        read_timeout: None,
        write_timeout: Some(send_timeout),
        first_by: Some(Instant::now() + shared.config.header_timeout),
    };
    // Bounds the few writes outside a response too (`100 Continue`).
    if let Err(err) = conn.stream.set_write_timeout(Some(send_timeout)) {
        log::debug!("http: cannot set write timeout for {peer}: {err}");
        return;
    }
    let ending = conn.serve();
    conn.finish(ending);
}

struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
}

/// Calls `f`, turning a panic into an error log and the `fallback` response.
pub(super) fn guarded(
    f: impl FnOnce() -> Response,
    fallback: impl FnOnce() -> Response,
    what: &str,
) -> Response {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(response) => response,
        Err(payload) => {
            log::error!("http: handler panicked in {what}: {}", panic_message(&*payload));
            fallback()
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

struct Conn<'a> {
    shared: &'a Shared,
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    /// Received bytes not yet consumed; may hold the start of the next request.
    buf: Vec<u8>,
    /// Where ordinary reads land before their bytes join `buf`: zeroed once
    /// per connection instead of growing `buf` by a zeroed chunk per read.
    scratch: Vec<u8>,
    /// The socket's read timeout as last set (see `fill`).
    read_timeout: Option<Duration>,
    /// The socket's write timeout as last set (see `pace.rs`).
    write_timeout: Option<Duration>,
    /// Until the first request's head is complete: when it must be. A
    /// connection that sends nothing, or drips its head, is closed
    /// `header_timeout` after it was accepted, not after the idle timeout.
    first_by: Option<Instant>,
}

impl Conn<'_> {
    /// Serves requests until the connection should end.
    fn serve(&mut self) -> Ending {
        loop {
            if self.buf.is_empty() && !self.await_request() {
                return Ending::Quiet;
            }
            let head = match self.read_head() {
                Ok(Some(head)) => head,
                Ok(None) => return Ending::Quiet,
                Err(err) => return self.reject(err),
            };
            if let Some(ending) = self.exchange(head) {
                return ending;
            }
        }
    }

    /// Waits idle for the first bytes of the next request. False means close.
    fn await_request(&mut self) -> bool {
        if !self.shared.mark_idle(self.id) {
            return false;
        }
        let deadline = self.first_by.unwrap_or_else(|| Instant::now() + self.shared.config.idle_timeout);
        match self.fill(deadline, 0) {
            Fill::Data => {
                self.shared.mark(self.id, Phase::Reading);
                true
            }
            Fill::Timeout => {
                log::debug!("http: closing idle connection from {}", self.peer);
                false
            }
            Fill::Eof => false,
            Fill::Failed(err) => {
                log::debug!("http: read from {} failed: {err}", self.peer);
                false
            }
        }
    }

    /// Reads until a full head is buffered. `Ok(None)`: the client went away
    /// or missed the header deadline (slowloris); just close.
    fn read_head(&mut self) -> Result<Option<Head>, TransportError> {
        let config = &self.shared.config;
        let deadline = self.first_by.unwrap_or_else(|| Instant::now() + config.header_timeout);
        loop {
            match parse::parse_head(&self.buf, config.max_headers, config.max_header_bytes)? {
                Parsed::Complete(head, used) => {
                    self.buf.drain(..used);
                    self.first_by = None;
                    return Ok(Some(head));
                }
                Parsed::Partial => {}
            }
            match self.fill(deadline, 0) {
                Fill::Data => {}
                Fill::Timeout => {
                    log::debug!("http: {} missed the header deadline", self.peer);
                    return Ok(None);
                }
                Fill::Eof | Fill::Failed(_) => return Ok(None),
            }
        }
    }

    /// Reads the body, runs the handler and writes the response. `None`
    /// keeps the connection for the next request.
    fn exchange(&mut self, head: Head) -> Option<Ending> {
        let body = match self.read_body(&head) {
            BodyRead::Done(bytes) => Ok(bytes),
            BodyRead::TooLarge => Err(BodyError::TooLarge),
            BodyRead::Invalid(message) => return Some(self.reject(TransportError::BadRequest(message))),
            BodyRead::Gone => return Some(Ending::Quiet),
        };
        // Answering now: not a connection to close for a newer one.
        self.shared.mark(self.id, Phase::Busy);
        // After an unread body the stream position is unknown: close. A
        // panic may have left shared state odd; start the client afresh.
        let body_failed = body.is_err();
        let (head_only, http10, keep_alive) = (head.method == "HEAD", head.http10, head.keep_alive);
        let request = Request {
            method: head.method,
            target: head.target,
            headers: head.headers,
            body,
            peer: self.peer,
        };
        let (response, panicked) = self.call_handler(request);
        let options = Options { head_only, http10, close: !keep_alive || body_failed || panicked };
        self.respond(response, options)
    }

    fn call_handler(&self, request: Request) -> (Response, bool) {
        let handler = &self.shared.handler;
        let (method, target) = (request.method.clone(), request.target.clone());
        match catch_unwind(AssertUnwindSafe(|| handler.handle(request))) {
            Ok(response) => (response, false),
            Err(payload) => {
                log::error!("http: handler panicked on {method} {target}: {}", panic_message(&*payload));
                (self.error_response(TransportError::Internal), true)
            }
        }
    }

    fn error_response(&self, err: TransportError) -> Response {
        let handler = &self.shared.handler;
        let status = match err {
            TransportError::BadRequest(_) => 400,
            TransportError::HeadersTooLarge => 431,
            TransportError::Internal => 500,
        };
        guarded(|| handler.transport_error(err), || write::fallback(status), "transport_error")
    }

    /// Answers a request the transport refuses, then closes.
    fn reject(&mut self, err: TransportError) -> Ending {
        log::debug!("http: rejecting request from {}: {err:?}", self.peer);
        let response = self.error_response(err);
        let options = Options { head_only: false, http10: false, close: true };
        self.respond(response, options).unwrap_or(Ending::Linger)
    }

    /// Writes a response; `None` keeps the connection open.
    fn respond(&mut self, response: Response, mut options: Options) -> Option<Ending> {
        // Checked as late as possible so requests finishing during shutdown
        // tell their client not to reuse the connection.
        options.close |= self.shared.is_stopping();
        let mut out = Paced::new(&self.stream, self.shared.config.send_timeout, &mut self.write_timeout);
        match write::write_response(&mut out, response, options, &self.shared.stop_rx) {
            Ok(false) => None,
            Ok(true) => Some(Ending::Linger),
            Err(err) => {
                log::debug!("http: writing to {} failed: {err}", self.peer);
                Some(Ending::Quiet)
            }
        }
    }

    fn read_body(&mut self, head: &Head) -> BodyRead {
        let max = self.shared.config.max_body_bytes;
        match head.framing {
            Framing::Empty => BodyRead::Done(Vec::new()),
            Framing::Length(n) if n > max as u64 => BodyRead::TooLarge,
            Framing::Length(n) => match self.send_continue(head) {
                Ok(()) => self.read_sized(n as usize),
                Err(_) => BodyRead::Gone,
            },
            Framing::Chunked => match self.send_continue(head) {
                Ok(()) => {
                    let deadline = Instant::now() + self.shared.config.header_timeout;
                    let max_trailers = self.shared.config.max_header_bytes;
                    chunked::read(self, deadline, max, max_trailers)
                }
                Err(_) => BodyRead::Gone,
            },
        }
    }

    /// The client waits for this before sending a body it announced with
    /// `Expect: 100-continue`; unnecessary once body bytes have arrived.
    fn send_continue(&mut self, head: &Head) -> io::Result<()> {
        if !head.expect_continue || !self.buf.is_empty() {
            return Ok(());
        }
        self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
    }

    fn read_sized(&mut self, len: usize) -> BodyRead {
        let deadline = Instant::now() + self.shared.config.header_timeout;
        self.buf.reserve(len.saturating_sub(self.buf.len()));
        while self.buf.len() < len {
            let missing = len - self.buf.len();
            if !matches!(self.fill(deadline, missing), Fill::Data) {
                return BodyRead::Gone;
            }
        }
        let rest = self.buf.split_off(len);
        BodyRead::Done(mem::replace(&mut self.buf, rest))
    }

    /// One read into the buffer, waiting at most until `deadline`. `want` is
    /// how many bytes are known to be coming; reads are sized for it.
    fn fill(&mut self, deadline: Instant, want: usize) -> Fill {
        let size = want.clamp(READ_CHUNK, MAX_READ);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Fill::Timeout;
            }
            if let Err(err) = self.wait_at_most(deadline - now) {
                return Fill::Failed(err);
            }
            let result = if size == READ_CHUNK {
                self.read_chunk()
            } else {
                let start = self.buf.len();
                self.buf.resize(start + size, 0);
                let result = self.stream.read(&mut self.buf[start..]);
                self.buf.truncate(start + *result.as_ref().unwrap_or(&0));
                result
            };
            match result {
                Ok(0) => return Fill::Eof,
                Ok(_) => return Fill::Data,
                // Timeouts surface as WouldBlock on Unix and TimedOut on
                // Windows; the loop re-checks the deadline either way.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) => {}
                Err(err) => return Fill::Failed(err),
            }
        }
    }

    /// One read of up to `READ_CHUNK` bytes through the scratch buffer,
    /// appended to `buf`. The buffer is made only once a byte has arrived
    /// (`peek` waits as a read would): a connection that stays silent —
    /// thousands may, up to the connection cap — holds none of its 16 KiB.
    fn read_chunk(&mut self) -> io::Result<usize> {
        if self.scratch.is_empty() {
            if self.stream.peek(&mut [0u8; 1])? == 0 {
                return Ok(0);
            }
            self.scratch = vec![0; READ_CHUNK];
        }
        let got = self.stream.read(&mut self.scratch)?;
        self.buf.extend_from_slice(&self.scratch[..got]);
        Ok(got)
    }

    /// Makes the next read return within `wait` (give or take
    /// `TIMEOUT_SLACK`). The timeout already set is kept when it is at most
    /// that long and at least half of it: the read then returns early at
    /// worst, and `fill` checks its deadline and waits again. A keep-alive
    /// connection thus sets it once, not once per request (a system call
    /// each).
    fn wait_at_most(&mut self, wait: Duration) -> io::Result<()> {
        let wait = at_least_1ms(wait);
        if self.read_timeout.is_some_and(|set| set <= wait + TIMEOUT_SLACK && set * 2 >= wait) {
            return Ok(());
        }
        self.stream.set_read_timeout(Some(wait))?;
        self.read_timeout = Some(wait);
        Ok(())
    }

    fn finish(self, ending: Ending) {
        match ending {
            Ending::Quiet => {
                let _ = self.stream.shutdown(Shutdown::Both);
            }
            Ending::Linger => linger(self.stream),
        }
    }
}

/// Half-closes the socket and discards input until the peer closes too (or a
/// short time or byte budget runs out), so the last response is not lost to
/// a reset caused by unread request bytes.
fn linger(mut stream: TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut sink = [0u8; 8192];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let now = Instant::now();
        if now >= deadline || stream.set_read_timeout(Some(at_least_1ms(deadline - now))).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) => return,
            Ok(n) => discarded += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// `set_read_timeout(Some(ZERO))` is an error; round tiny waits up.
fn at_least_1ms(wait: Duration) -> Duration {
    wait.max(Duration::from_millis(1))
}
