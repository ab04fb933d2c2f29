//! Tests of the request policy. The controller tests drive the pure state
//! machine with hand-set times; the `Policy` tests use a `ManualClock`.
//! Only the tests of the real blocking FIFO wait use (short) real time.
//!
//! The tests are split by topic: `admission`, `circuit`, `backoff`,
//! `queue`, `rate`, `jitter`, `sweep`, `persistence` and `wrapper` (the
//! thread-safe `Policy`). This file holds the helpers they share.

use super::*;
use crate::config;
use std::sync::Arc;

mod admission;
mod backoff;
mod circuit;
mod jitter;
mod persistence;
mod queue;
mod rate;
mod sweep;
mod wrapper;

const T0: i64 = 1_700_000_000_000;

fn cfg() -> config::Policy {
    config::Policy::default()
}

fn target(client: &str, platform: &str) -> Target {
    Target::new(client, platform)
}

fn claude() -> Target {
    target("firefox-1", "claude")
}

fn grant(ctl: &mut Controller, t: &Target, now: i64) -> Grant {
    match ctl.try_admit(t, "req", now, u64::MAX, None) {
        Admission::Granted(g) => g,
        other => panic!("expected a grant at {now}, got {other:?}"),
    }
}

fn refusal(ctl: &mut Controller, t: &Target, now: i64) -> Refusal {
    match ctl.try_admit(t, "req", now, u64::MAX, None) {
        Admission::Refused(r) => r,
        other => panic!("expected a refusal at {now}, got {other:?}"),
    }
}

fn wait_id(admission: Admission) -> WaiterId {
    match admission {
        Admission::Wait(id) => id,
        other => panic!("expected Wait, got {other:?}"),
    }
}

fn tv(ctl: &Controller, t: &Target, now: i64) -> TargetView {
    ctl.view(Some(&t.platform), now)
        .targets
        .into_iter()
        .find(|v| v.client_id == t.client_id)
        .expect("target in view")
}

fn pv(ctl: &Controller, platform: &str, now: i64) -> PlatformView {
    ctl.view(Some(platform), now).platforms.into_iter().next().expect("platform in view")
}

fn fail(ctl: &mut Controller, t: &Target, now: i64) {
    let g = grant(ctl, t, now);
    assert!(ctl.complete(t, g.lease_id, &Outcome::failure("upstream_500"), now));
}

/// Deterministic uniform [0, 1) numbers (xorshift64*).
fn seeded(seed: u64) -> impl FnMut() -> f64 + Send {
    let mut s = seed.max(1);
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The largest number of times in any half-open window `[a, a + w)`.
fn max_in_any_window(times: &[i64], w: i64) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|&&t| t < sorted[i] + w).count())
        .max()
        .unwrap_or(0)
}

fn noop() -> Box<dyn Fn() + Send + Sync> {
    Box::new(|| {})
}

fn manual_policy(config: config::Policy, clock: &Arc<ManualClock>) -> Arc<Policy> {
    Policy::new(config, clock.clone(), noop())
}

// Circuit breaker (also used by `persistence`)

fn circuit_cfg() -> config::Policy {
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 3;
    c.circuit_breaker.open_ms = 60_000;
    c.backoff.base_ms = 1_000;
    c.backoff.max_ms = 100_000;
    c
}

/// Three failures spaced by their backoff: opens at T0 + 3_000.
fn open_circuit(ctl: &mut Controller, t: &Target) -> i64 {
    fail(ctl, t, T0);
    assert_eq!(tv(ctl, t, T0).circuit_state, CircuitState::Closed);
    fail(ctl, t, T0 + 1_000);
    assert_eq!(tv(ctl, t, T0 + 1_000).circuit_state, CircuitState::Closed);
    fail(ctl, t, T0 + 3_000);
    let v = tv(ctl, t, T0 + 3_000);
    assert_eq!(v.circuit_state, CircuitState::Open);
    assert_eq!(v.consecutive_failures, 3);
    assert_eq!(v.circuit_retry_at, Some(T0 + 63_000));
    T0 + 3_000
}

// Rate limit (also used by `wrapper`)

fn rate_cfg(n: u32, window_ms: u64) -> config::Policy {
    let mut c = cfg();
    c.rate_limit.requests_per_minute_per_platform = n;
    c.rate_limit.window_ms = window_ms;
    c
}

// Jitter (also used by `wrapper`)

fn jitter(min_ms: u64, max_ms: u64, mu_ms: u64, sigma_ms: u64) -> config::Jitter {
    config::Jitter { min_ms, max_ms, mu_ms, sigma_ms }
}
