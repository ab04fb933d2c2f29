//! Where the policy's "now" comes from. The daemon uses [`SystemClock`];
//! tests use [`ManualClock`] and move time by hand. Only the controller's
//! timestamps come from the clock: the real blocking FIFO wait always runs
//! on real time (`Instant`), since it is a wait on a channel.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of wall-clock milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The real clock (`util::now_ms`).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::util::now_ms()
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock { now: AtomicI64::new(start_ms) }
    }

    pub fn set(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }

    /// Moves the clock by `ms` (may be negative) and returns the new time.
    pub fn advance(&self, ms: i64) -> i64 {
        self.now.fetch_add(ms, Ordering::SeqCst) + ms
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}
