//! The request policy (docs/POLICY.md): every action the daemon sends towards a
//! platform through a plugin first asks it for a lease on its target
//! `(client_id, platform)`. It protects the person's accounts with a circuit
//! breaker, an exponential backoff after failures, one request in flight per
//! target (later ones wait in FIFO order), a sliding-window rate limit per
//! platform and a random jitter.
//!
//! The module is split in two layers:
//! - [`Controller`] (`controller`) is a pure, deterministic state machine:
//!   every method takes the current time in ms and nothing in it sleeps,
//!   blocks or does I/O, so every rule is tested with hand-set times;
//! - [`Policy`] (`lease`) is the thread-safe wrapper the daemon shares: a
//!   `parking_lot` mutex around the controller, a [`Clock`], the real
//!   blocking FIFO wait on per-waiter channels, the [`Lease`] guard and the
//!   stale-lease sweeper thread. The lock is never held across a wait, a
//!   channel send or the `on_change` callback.
//!
//! `state` holds the persisted JSON document and `view` the plain structs
//! of the `policy` part of `GET /v1/browser`, each with the `impl
//! Controller` block that produces it (`persisted_json`/`restore`, `view`);
//! `records` declares the controller's per-platform and per-target records;
//! `rules` holds the stateless arithmetic of the rules (backoff, rate-limit
//! delay, jitter, window pruning). Operator documentation: docs/POLICY.md.

mod clock;
mod controller;
mod lease;
mod records;
mod rules;
mod state;
mod view;

#[cfg(test)]
mod tests;

pub use clock::{Clock, ManualClock, SystemClock};
pub use controller::{Admission, Controller, Grant, LeaseId, Swept, WaiterId};
pub use lease::{Lease, Policy, SweeperHandle};
pub use rules::{backoff_ms, rate_limit_delay_ms, sample_jitter_ms};
pub use state::STATE_VERSION;
pub use view::{PlatformView, PolicyView, TargetView};

use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// What a lease is for: one plugin client on one platform.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Target {
    pub client_id: String,
    pub platform: String,
}

impl Target {
    pub fn new(client_id: impl Into<String>, platform: impl Into<String>) -> Target {
        Target { client_id: client_id.into(), platform: platform.into() }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.client_id, self.platform)
    }
}

/// The circuit breaker of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    #[default]
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

/// How a leased request ended. `Failure::code` is what the caller saw
/// (`upstream_429`, `timeout`, `delivery_timeout`, …) and becomes the
/// target's `last_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure { code: String },
    Cancelled,
}

impl Outcome {
    pub fn failure(code: impl Into<String>) -> Outcome {
        Outcome::Failure { code: code.into() }
    }
}

/// Why the policy refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The target's circuit is open (or its half-open trial is in flight).
    CircuitOpen,
    /// The target failed recently and is still backing off.
    BackoffActive,
    /// The target stayed busy for longer than the caller could wait.
    WaiterTimeout,
    /// The platform's rate window would delay the request longer than the
    /// caller accepts (`AdmitOptions::max_delay_ms`).
    RateLimited,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::CircuitOpen => "circuit_open",
            RefusalCode::BackoffActive => "backoff_active",
            RefusalCode::WaiterTimeout => "waiter_timeout",
            RefusalCode::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused admission: the code and how long to wait before asking again
/// (0 = no useful hint, ask again whenever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub retry_after_ms: u64,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (retry after {} ms)", self.code, self.retry_after_ms)
    }
}

impl std::error::Error for Refusal {}

/// What one caller accepts while being admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitOptions {
    /// How long this caller may wait in the target's FIFO queue while
    /// another request holds it; the effective wait is
    /// `min(max_wait, policy.waiter_timeout_ms)`. Zero = do not queue:
    /// a busy target is refused `waiter_timeout` at once.
    pub max_wait: Duration,
    /// The largest rate-limit delay this caller is willing to take (with
    /// `one_deadline`, the delay plus the jitter drawn); over that the
    /// admission is refused `rate_limited` with `retry_after_ms =
    /// rate_limit_delay_ms` and nothing is charged.
    pub max_delay_ms: u64,
    /// The caller has one deadline for everything (a relay, an action): the
    /// time it spent queued comes off `max_delay_ms` and the jitter counts
    /// against it too, so that it is never admitted to go out after that
    /// deadline. The dispatcher's limit is on the rate delay alone
    /// (docs/RENEWAL.md step 9) and it takes whatever jitter the policy draws
    /// (with the jitter counted, a jitter above its 1 s refused every
    /// delivery with `retry_after_ms` 0, for ever), so it leaves this off.
    pub one_deadline: bool,
}

impl Default for AdmitOptions {
    /// Wait up to `waiter_timeout_ms`, accept any delay.
    fn default() -> AdmitOptions {
        AdmitOptions { max_wait: Duration::MAX, max_delay_ms: u64::MAX, one_deadline: false }
    }
}
