//! What an accept loop does when `accept` fails or a flood makes it log
//! the same line over and over: the HTTP server's and the bridge's loops
//! share it, so neither spins, ends, or floods the log on EMFILE and the
//! like (tiny_http's loop ended for good on the first EMFILE).

use std::io;
use std::time::{Duration, Instant};

/// Pause after an accept error caused by resource exhaustion. Retrying at
/// once would spin; a long pause would keep clients waiting after fds return.
const EXHAUSTED_BACKOFF: Duration = Duration::from_millis(50);

/// Pause after an unexpected accept error, so an unknown persistent error
/// cannot turn the loop into a busy loop.
const OTHER_BACKOFF: Duration = Duration::from_millis(20);

/// Tracks a run of accept errors: logs them (rate-limited), pauses when
/// retrying at once would spin, and reports when accepting works again.
pub struct AcceptFailures {
    /// Which listener, as the log lines name it (`http`, `bridge`).
    who: &'static str,
    limiter: LogLimiter,
    count: u64,
    since: Option<Instant>,
}

impl AcceptFailures {
    pub fn new(who: &'static str) -> Self {
        AcceptFailures { who, limiter: LogLimiter::default(), count: 0, since: None }
    }

    /// Logs `err` (rate-limited) and pauses before the next accept.
    pub fn back_off(&mut self, err: &io::Error) {
        match err.kind() {
            // The peer gave up before we accepted; nothing is wrong with us.
            io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::WouldBlock => return,
            _ => {}
        }
        self.count += 1;
        self.since.get_or_insert_with(Instant::now);
        self.limiter.warn(format_args!("{}: accept failed: {err}; retrying", self.who));
        let pause = if is_exhaustion(err) { EXHAUSTED_BACKOFF } else { OTHER_BACKOFF };
        std::thread::sleep(pause);
    }

    /// Notes an accept that worked: ends a run of failures with one line.
    pub fn recovered(&mut self) {
        if let Some(since) = self.since.take() {
            log::warn!(
                "{}: accepting again after {} failed accept(s) over {:?}",
                self.who,
                self.count,
                since.elapsed()
            );
            self.count = 0;
        }
    }
}

/// EMFILE, ENFILE, ENOBUFS or ENOMEM: the process or system ran out of
/// descriptors or buffers, which heals by itself once connections close.
fn is_exhaustion(err: &io::Error) -> bool {
    if err.kind() == io::ErrorKind::OutOfMemory {
        return true;
    }
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOMEM: i32 = 12;
    #[cfg(target_os = "linux")]
    const ENOBUFS: i32 = 105;
    #[cfg(not(target_os = "linux"))]
    const ENOBUFS: i32 = 55;
    matches!(err.raw_os_error(), Some(EMFILE | ENFILE | ENOMEM | ENOBUFS))
}

/// Lets through at most one warning per second and reports how many were
/// swallowed, so an error storm cannot flood the log.
#[derive(Default)]
pub struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn warn(&mut self, message: std::fmt::Arguments<'_>) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!("{message} ({} similar message(s) suppressed)", self.suppressed);
        } else {
            log::warn!("{message}");
        }
        self.last = Some(now);
        self.suppressed = 0;
    }
}
