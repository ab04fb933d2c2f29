//! The send stall timeout: a response is written through [`Paced`], which
//! gives up when the client stops taking bytes. The rule is progress, not a
//! total time: every `PROGRESS_BYTES` written (or the rest of the response,
//! if less) must leave within `send_timeout`, and the clock starts afresh
//! for each response and each streamed chunk (waiting for a relay's next
//! event is not the client's stall). A socket's own write timeout alone
//! would not do: it bounds one `send` call, so a client that reads a byte
//! now and then would keep the connection, its thread and the response in
//! memory for as long as it liked.

use std::io::{self, IoSlice, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes that must leave within one `send_timeout`.
pub(super) const PROGRESS_BYTES: usize = 64 * 1024;

/// How much later than its deadline a write may give up: a write timeout
/// already set on the socket is reused when it is at most this much longer
/// than what is left (one system call per connection, not per response).
const SLACK: Duration = Duration::from_millis(10);

/// Where a response is written: the transport's sink, whose deadline starts
/// afresh at each response and each streamed chunk. Test sinks (`Vec<u8>`)
/// have no deadline.
pub(super) trait Sink: Write {
    fn fresh_deadline(&mut self) {}
}

impl Sink for Vec<u8> {}

/// A socket writer with the stall rule above.
pub(super) struct Paced<'a> {
    stream: &'a TcpStream,
    stall: Duration,
    deadline: Instant,
    progress: usize,
    /// The socket's write timeout as last set (kept by the connection).
    set: &'a mut Option<Duration>,
}

impl<'a> Paced<'a> {
    pub(super) fn new(stream: &'a TcpStream, stall: Duration, set: &'a mut Option<Duration>) -> Paced<'a> {
        Paced { stream, stall, deadline: Instant::now() + stall, progress: 0, set }
    }

    /// Makes the next system call return by the deadline, or fails when it
    /// has passed.
    fn arm(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(stalled());
        }
        let wait = left.max(Duration::from_millis(1));
        if self.set.is_some_and(|set| set <= wait + SLACK && set * 2 >= wait) {
            return Ok(());
        }
        self.stream.set_write_timeout(Some(wait))?;
        *self.set = Some(wait);
        Ok(())
    }

    fn advanced(&mut self, n: usize) {
        self.progress += n;
        if self.progress >= PROGRESS_BYTES {
            self.fresh_deadline();
        }
    }
}

impl Sink for Paced<'_> {
    fn fresh_deadline(&mut self) {
        self.deadline = Instant::now() + self.stall;
        self.progress = 0;
    }
}

impl Write for Paced<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        let n = timed(self.stream.write(buf))?;
        self.advanced(n);
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.arm()?;
        let n = timed(self.stream.write_vectored(bufs))?;
        self.advanced(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A send that timed out is the client's stall.
fn timed(result: io::Result<usize>) -> io::Result<usize> {
    match result {
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Err(stalled()),
        other => other,
    }
}

fn stalled() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading (send stall timeout)")
}
