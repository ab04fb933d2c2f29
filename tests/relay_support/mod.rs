//! Helpers of the request-policy tests through the raw relay
//! (`tests/relay_policy*.rs`): a daemon with a given `policy` section and
//! its timed jobs idle, relays on the `claude` platform (in this thread or
//! another), the policy's view of the one target, and the refusal's
//! `retry_after_ms`. Built on `tests/support`; a test file declares both:
//! ```ignore
//! mod support;
//! mod relay_support;
//! ```

#![allow(dead_code)]

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::bridge::post_in_thread;
use crate::support::ws::Plugin;
use crate::support::{Daemon, DaemonOpts, Resp};

/// How long a test waits for a frame or an event.
pub const T: Duration = Duration::from_secs(5);

pub fn start(policy: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(json!({
        "timed_jobs": {"interval_ms": 3_600_000},
        "policy": policy,
    })))
}

pub fn relay_body(path: &str, timeout_ms: u64) -> Value {
    json!({"platform": "claude", "method": "GET", "path": path, "timeout_ms": timeout_ms})
}

/// How long a relay's caller waits for the answer (far above any relay's
/// own `timeout_ms`, so a loaded machine cannot fail the wait first).
const RELAY_WAIT: Duration = Duration::from_secs(120);

pub fn relay(d: &Daemon, path: &str, timeout_ms: u64) -> Resp {
    let body = relay_body(path, timeout_ms).to_string();
    crate::support::try_request(
        d.addr,
        "POST",
        "/v1/browser/request",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
        RELAY_WAIT,
    )
    .expect("relay POST")
}

pub fn relay_in_thread(d: &Daemon, path: &str, timeout_ms: u64) -> std::thread::JoinHandle<(Resp, Duration)> {
    post_in_thread(d, "/v1/browser/request", relay_body(path, timeout_ms), RELAY_WAIT)
}

pub fn target(d: &Daemon) -> Value {
    let view = d.get("/v1/browser?platform=claude").data();
    let targets = view["policy"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{view}");
    targets[0].clone()
}

/// `retry_after_ms` of a 429 with the expected code.
pub fn refused(resp: &Resp, code: &str) -> i64 {
    let err = resp.error(429, code);
    err["details"]["retry_after_ms"].as_i64().unwrap_or_else(|| panic!("retry_after_ms missing: {err}"))
}

/// How many `api_request` frames the plugin has received (drains them).
pub fn api_requests(p: &Plugin) -> usize {
    let mut n = 0;
    while let Some(r) = p.next_frame(Duration::from_millis(20)) {
        if r.frame["type"] == "api_request" {
            n += 1;
        }
    }
    n
}
