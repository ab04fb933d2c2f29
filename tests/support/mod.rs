//! Shared helpers of the integration tests: temporary directories, a daemon
//! process under test, a tiny blocking HTTP/1.1 client, polling with a
//! deadline, and fixtures written straight into the store.
//!
//! One file per part: `daemon.rs` (temporary directories, the binary, the
//! daemon under test), `http.rs` (the client), `fixtures.rs` (payloads and
//! store rows); the plugin side is `ws.rs`, `sse.rs` and `bridge.rs`.
//! The constants, the clock and `wait_until` are here.
//!
//! Every test gets its own `Daemon` (own temp dir, own ports), so the tests of
//! one file may run in parallel threads. Nothing here sleeps to synchronise:
//! waiting is always "poll a condition until a deadline".

#![allow(dead_code)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a daemon gets to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopped daemon gets to exit before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read deadline of one HTTP exchange.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Path of the daemon binary built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_baa-conductor")
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Polls `cond` until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub mod bridge;
mod daemon;
mod fixtures;
mod http;
pub mod sse;
pub mod ws;

// Each test file uses a different part: a re-export one of them leaves
// unused is not a mistake.
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use fixtures::*;
#[allow(unused_imports)]
pub use http::*;
