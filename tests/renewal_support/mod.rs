//! Helpers shared by the renewal and timed-jobs tests (`tests/renewal_*.rs`,
//! `tests/timed_jobs_*.rs`): a fast default config, the timed-jobs JSONL log,
//! the renewal API, direct store fixtures, and the plugin simulator
//! (`baa-plugin-sim`) as a child process whose transcript is captured so a
//! test can count the `proxy_delivery` frames it received.
//!
//! One file per part: `log.rs` (the timed-jobs log), `api.rs` (the renewal
//! API), `fixtures.rs` (rows written straight into the database), `sim.rs`
//! (the simulator); the config is here.
//!
//! Built on `tests/support` (the daemon, HTTP client and `wait_until`); a
//! test file declares both modules:
//! ```ignore
//! mod support;
//! mod renewal_support;
//! ```
//! Nothing here sleeps to synchronise: every wait polls a condition with a
//! deadline and panics with the relevant state when it is not met.

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{Daemon, DaemonOpts};

mod api;
mod fixtures;
mod log;
mod sim;

// Each test file uses a different part: a re-export one of them leaves
// unused is not a mistake.
#[allow(unused_imports)]
pub use api::*;
#[allow(unused_imports)]
pub use fixtures::*;
#[allow(unused_imports)]
pub use log::*;
#[allow(unused_imports)]
pub use sim::*;

/// Default deadline of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/// Fast ticks (50 ms, no settle delay), exact retry delays (no jitter), and a
/// policy that stays out of the way (no real rate limit, 1 ms backoff, a
/// circuit that does not open). Retries and rechecks are far away unless a
/// test says otherwise, so a job is attempted once per test step.
pub fn base_config() -> Value {
    json!({
        "timed_jobs": { "interval_ms": 50, "settle_delay_ms": 0 },
        "renewal": {
            "retry_jitter_ratio": 0,
            "execution_timeout_ms": 5000,
            "retry_base_delay_ms": 60000,
            "retry_max_delay_ms": 300000,
            "recheck_delay_ms": 10000,
            "recovery_delay_ms": 60000
        },
        "policy": {
            "rate_limit": { "requests_per_minute_per_platform": 100000, "window_ms": 60000 },
            "backoff": { "base_ms": 1, "max_ms": 1 },
            "circuit_breaker": { "failure_threshold": 100000, "open_ms": 60000 }
        }
    })
}

/// Deep-merges `over` into `base` (objects merge key by key, anything else
/// replaces).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `base_config()` with `over` merged in.
pub fn config(over: Value) -> Value {
    let mut c = base_config();
    merge(&mut c, over);
    c
}

/// A daemon on `config(over)`.
pub fn start(over: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config(over)))
}
