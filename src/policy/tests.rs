//! Tests of the request policy. The controller tests drive the pure state
//! machine with hand-set times; the `Policy` tests use a `ManualClock`.
//! Only the tests of the real blocking FIFO wait use (short) real time.

use super::*;
use crate::config;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

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
    ctl.view(Some(platform), now)
        .platforms
        .into_iter()
        .next()
        .expect("platform in view")
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
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|&&t| t < sorted[i] + w)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn noop() -> Box<dyn Fn() + Send + Sync> {
    Box::new(|| {})
}

fn manual_policy(config: config::Policy, clock: &Arc<ManualClock>) -> Arc<Policy> {
    Policy::new(config, clock.clone(), noop())
}

// ---------------------------------------------------------------------------
// Admission basics

#[test]
fn fresh_target_is_admitted_at_once_and_recorded() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let g = grant(&mut ctl, &t, T0);
    assert_eq!(
        (g.admitted_at, g.rate_limit_delay_ms, g.jitter_ms, g.trial),
        (T0, 0, 0, false)
    );
    assert_eq!(g.ready_at(), T0);
    let v = tv(&ctl, &t, T0);
    assert_eq!(v.circuit_state, CircuitState::Closed);
    assert_eq!((v.in_flight, v.waiting), (1, 0));
    assert_eq!(v.last_activity_at, Some(T0));
    assert_eq!(v.last_activity_reason.as_deref(), Some("admitted"));
    let p = pv(&ctl, "claude", T0);
    assert_eq!(
        (p.recent_dispatch_count, p.last_dispatched_at, p.waiting),
        (1, Some(T0), 0)
    );
    assert!(ctl.take_dirty());
    assert!(!ctl.take_dirty());
}

#[test]
fn refusal_codes_have_their_api_names() {
    assert_eq!(RefusalCode::CircuitOpen.as_str(), "circuit_open");
    assert_eq!(RefusalCode::BackoffActive.as_str(), "backoff_active");
    assert_eq!(RefusalCode::WaiterTimeout.as_str(), "waiter_timeout");
    assert_eq!(RefusalCode::RateLimited.as_str(), "rate_limited");
    assert_eq!(CircuitState::HalfOpen.as_str(), "half_open");
    let r = Refusal {
        code: RefusalCode::RateLimited,
        retry_after_ms: 5,
    };
    assert_eq!(
        serde_json::to_value(r).unwrap(),
        serde_json::json!({"code": "rate_limited", "retry_after_ms": 5})
    );
}

// ---------------------------------------------------------------------------
// Circuit breaker

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

#[test]
fn circuit_opens_at_the_failure_threshold() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let v = tv(&ctl, &t, opened);
    assert_eq!(v.last_error.as_deref(), Some("upstream_500"));
    assert_eq!(v.last_failure_at, Some(opened));
    assert_eq!(v.last_activity_reason.as_deref(), Some("complete_failure"));
    assert_eq!(v.in_flight, 0);
}

#[test]
fn open_circuit_refuses_with_exact_retry_after() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    // Circuit comes before backoff (backoff_until = opened + 4_000 here).
    for (now, expected) in [
        (opened, 60_000),
        (opened + 10_000, 50_000),
        (opened + 59_999, 1),
    ] {
        let r = refusal(&mut ctl, &t, now);
        assert_eq!(r.code, RefusalCode::CircuitOpen);
        assert_eq!(r.retry_after_ms, expected);
    }
    // Refusals change nothing persisted.
    assert!(ctl.take_dirty());
    refusal(&mut ctl, &t, opened + 1);
    assert!(!ctl.take_dirty());
    // Another target of the same platform is not affected.
    grant(&mut ctl, &target("firefox-2", "claude"), opened);
}

#[test]
fn open_circuit_becomes_half_open_with_a_single_trial() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let retry_at = opened + 60_000;
    let g = grant(&mut ctl, &t, retry_at);
    assert!(g.trial);
    assert_eq!(tv(&ctl, &t, retry_at).circuit_state, CircuitState::HalfOpen);
    // Anyone else is refused while the trial is out (hint: backoff.base_ms).
    let r = refusal(&mut ctl, &t, retry_at + 5);
    assert_eq!(
        r,
        Refusal {
            code: RefusalCode::CircuitOpen,
            retry_after_ms: 1_000
        }
    );
    assert_eq!(tv(&ctl, &t, retry_at + 5).waiting, 0);
}

#[test]
fn trial_success_closes_the_circuit() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let now = opened + 60_000;
    let g = grant(&mut ctl, &t, now);
    assert!(ctl.complete(&t, g.lease_id, &Outcome::Success, now + 10));
    let v = tv(&ctl, &t, now + 10);
    assert_eq!(v.circuit_state, CircuitState::Closed);
    assert_eq!(v.consecutive_failures, 0);
    assert_eq!(v.last_error, None);
    assert_eq!(v.circuit_retry_at, None);
    assert_eq!(v.last_success_at, Some(now + 10));
    assert_eq!(v.last_activity_reason.as_deref(), Some("complete_success"));
    assert!(!grant(&mut ctl, &t, now + 10).trial);
}

#[test]
fn trial_failure_reopens_with_a_new_retry_time() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let now = opened + 60_000;
    let g = grant(&mut ctl, &t, now);
    assert!(ctl.complete(&t, g.lease_id, &Outcome::failure("upstream_429"), now + 100));
    let v = tv(&ctl, &t, now + 100);
    assert_eq!(v.circuit_state, CircuitState::Open);
    assert_eq!(v.consecutive_failures, 4);
    assert_eq!(v.circuit_retry_at, Some(now + 100 + 60_000));
    assert_eq!(v.backoff_until, Some(now + 100 + 8_000));
    assert_eq!(v.last_error.as_deref(), Some("upstream_429"));
    let r = refusal(&mut ctl, &t, now + 100);
    assert_eq!(
        (r.code, r.retry_after_ms),
        (RefusalCode::CircuitOpen, 60_000)
    );
}

#[test]
fn a_half_open_trial_failure_reopens_even_below_the_threshold() {
    // A restored circuit can be open with fewer failures than the
    // threshold (the threshold was raised meanwhile): its trial's failure
    // still reopens it.
    let mut c = circuit_cfg();
    c.circuit_breaker.failure_threshold = 10;
    let mut ctl = Controller::new(c);
    let t = claude();
    let doc = format!(
        r#"{{"version":1,"platforms":[],"targets":[{{"client_id":"firefox-1","platform":"claude","circuit_state":"open","circuit_retry_at":{T0},"consecutive_failures":1}}]}}"#
    );
    ctl.restore(&doc, T0).unwrap();
    let g = grant(&mut ctl, &t, T0);
    assert!(g.trial);
    ctl.complete(&t, g.lease_id, &Outcome::failure("timeout"), T0);
    let v = tv(&ctl, &t, T0);
    assert_eq!(
        (v.circuit_state, v.consecutive_failures),
        (CircuitState::Open, 2)
    );
    assert_eq!(v.circuit_retry_at, Some(T0 + 60_000));
}

#[test]
fn a_swept_trial_counts_as_a_failure() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let now = opened + 60_000;
    let g = grant(&mut ctl, &t, now);
    let idle = 300_000;
    assert!(ctl.sweep(now + idle - 1).is_empty());
    let swept = ctl.sweep(now + idle);
    assert_eq!(swept.len(), 1);
    assert!(swept[0].trial);
    assert_eq!(swept[0].lease_id, g.lease_id);
    let v = tv(&ctl, &t, now + idle);
    assert_eq!(v.circuit_state, CircuitState::Open);
    assert_eq!(v.consecutive_failures, 4);
    assert_eq!(v.circuit_retry_at, Some(now + idle + 60_000));
    assert_eq!(v.last_error.as_deref(), Some("lease_idle_timeout"));
    assert_eq!(v.last_failure_at, Some(now + idle));
    assert_eq!(v.last_activity_reason.as_deref(), Some("stale_sweep"));
    assert_eq!(v.stale_sweep_count, 1);
    assert_eq!(v.in_flight, 0);
    // The owner's late completion is ignored.
    assert!(!ctl.complete(&t, g.lease_id, &Outcome::Success, now + idle + 1));
    assert_eq!(
        tv(&ctl, &t, now + idle + 1).circuit_state,
        CircuitState::Open
    );
}

#[test]
fn a_cancelled_trial_reopens_and_the_next_caller_is_the_trial() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let now = opened + 60_000;
    let g = grant(&mut ctl, &t, now);
    assert!(ctl.complete(&t, g.lease_id, &Outcome::Cancelled, now + 50));
    let v = tv(&ctl, &t, now + 50);
    assert_eq!(v.circuit_state, CircuitState::Open);
    assert_eq!(v.consecutive_failures, 3);
    assert_eq!(
        v.circuit_retry_at,
        Some(now),
        "retry time kept (already due)"
    );
    assert_eq!(
        v.last_activity_reason.as_deref(),
        Some("complete_cancelled")
    );
    let next = grant(&mut ctl, &t, now + 50);
    assert!(next.trial);
    assert_eq!(tv(&ctl, &t, now + 50).circuit_state, CircuitState::HalfOpen);
}

// ---------------------------------------------------------------------------
// Backoff

#[test]
fn backoff_doubles_from_base_and_is_capped() {
    let expected = [
        0, 5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000,
    ];
    for (n, want) in expected.iter().enumerate() {
        assert_eq!(backoff_ms(5_000, 300_000, n as u32), *want, "n = {n}");
    }
    for n in [63, 64, 65, 1_000, u32::MAX] {
        assert_eq!(backoff_ms(5_000, 300_000, n), 300_000, "n = {n}");
    }
    assert_eq!(backoff_ms(1, u64::MAX, 64), 1 << 63);
    assert_eq!(backoff_ms(2, u64::MAX, 64), u64::MAX);
}

#[test]
fn failures_set_backoff_and_refuse_until_it_ends() {
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 100;
    let mut ctl = Controller::new(c);
    let t = claude();
    let mut now = T0;
    for (n, backoff) in [
        5_000i64, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000,
    ]
    .into_iter()
    .enumerate()
    {
        fail(&mut ctl, &t, now);
        let v = tv(&ctl, &t, now);
        assert_eq!(v.consecutive_failures, n as u32 + 1);
        assert_eq!(v.backoff_until, Some(now + backoff));
        assert_eq!(v.circuit_state, CircuitState::Closed);
        let r = refusal(&mut ctl, &t, now + 1);
        assert_eq!(
            (r.code, r.retry_after_ms),
            (RefusalCode::BackoffActive, backoff as u64 - 1)
        );
        let r = refusal(&mut ctl, &t, now + backoff - 1);
        assert_eq!(r.retry_after_ms, 1);
        now += backoff;
    }
    // At backoff_until the target is admitted again; success resets.
    let g = grant(&mut ctl, &t, now);
    assert!(ctl.complete(&t, g.lease_id, &Outcome::Success, now));
    let v = tv(&ctl, &t, now);
    assert_eq!((v.consecutive_failures, v.last_error.as_deref()), (0, None));
    fail(&mut ctl, &t, now);
    assert_eq!(tv(&ctl, &t, now).backoff_until, Some(now + 5_000));
}

#[test]
fn cancelled_changes_no_counter_but_frees_the_target() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    fail(&mut ctl, &t, T0);
    let before = tv(&ctl, &t, T0);
    let g = grant(&mut ctl, &t, T0 + 5_000);
    assert!(ctl.complete(&t, g.lease_id, &Outcome::Cancelled, T0 + 5_001));
    let after = tv(&ctl, &t, T0 + 5_001);
    assert_eq!(after.consecutive_failures, before.consecutive_failures);
    assert_eq!(after.backoff_until, before.backoff_until);
    assert_eq!(after.last_error, before.last_error);
    assert_eq!(after.last_activity_at, Some(T0 + 5_001));
    assert_eq!(
        after.last_activity_reason.as_deref(),
        Some("complete_cancelled")
    );
    assert_eq!(after.in_flight, 0);
    grant(&mut ctl, &t, T0 + 5_001);
}

// ---------------------------------------------------------------------------
// Concurrency and the FIFO queue (bookkeeping)

#[test]
fn one_in_flight_per_target_and_strict_fifo_handoff() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let a = grant(&mut ctl, &t, T0);
    let b = wait_id(ctl.try_admit(&t, "b", T0, u64::MAX, None));
    let c = wait_id(ctl.try_admit(&t, "c", T0, u64::MAX, None));
    assert_ne!(b, c);
    assert_eq!(tv(&ctl, &t, T0).waiting, 2);
    assert_eq!(pv(&ctl, "claude", T0).waiting, 2);
    // Another target is independent.
    grant(&mut ctl, &target("firefox-2", "claude"), T0);
    assert!(ctl.take_wakes().is_empty());

    ctl.complete(&t, a.lease_id, &Outcome::Success, T0 + 10);
    assert_eq!(ctl.take_wakes(), vec![b]);
    // While b has the turn, c (spuriously retrying) and a newcomer wait.
    assert_eq!(
        wait_id(ctl.try_admit(&t, "c", T0 + 11, u64::MAX, Some(c))),
        c
    );
    let d = wait_id(ctl.try_admit(&t, "d", T0 + 11, u64::MAX, None));
    assert_eq!(tv(&ctl, &t, T0 + 11).waiting, 3);
    let gb = match ctl.try_admit(&t, "b", T0 + 12, u64::MAX, Some(b)) {
        Admission::Granted(g) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(tv(&ctl, &t, T0 + 12).waiting, 2);
    ctl.complete(&t, gb.lease_id, &Outcome::Success, T0 + 20);
    assert_eq!(ctl.take_wakes(), vec![c]);
    let gc = match ctl.try_admit(&t, "c", T0 + 21, u64::MAX, Some(c)) {
        Admission::Granted(g) => g,
        other => panic!("{other:?}"),
    };
    ctl.complete(&t, gc.lease_id, &Outcome::Cancelled, T0 + 30);
    assert_eq!(ctl.take_wakes(), vec![d]);
}

#[test]
fn a_waiter_giving_up_passes_the_turn_on() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let a = grant(&mut ctl, &t, T0);
    let b = wait_id(ctl.try_admit(&t, "b", T0, u64::MAX, None));
    let c = wait_id(ctl.try_admit(&t, "c", T0, u64::MAX, None));
    let d = wait_id(ctl.try_admit(&t, "d", T0, u64::MAX, None));
    // c gives up while still queued: nobody is woken.
    ctl.cancel_waiter(&t, c);
    assert!(ctl.take_wakes().is_empty());
    ctl.complete(&t, a.lease_id, &Outcome::Success, T0 + 1);
    assert_eq!(ctl.take_wakes(), vec![b]);
    // b gives up after being handed the turn: d gets it.
    ctl.cancel_waiter(&t, b);
    assert_eq!(ctl.take_wakes(), vec![d]);
    assert!(matches!(
        ctl.try_admit(&t, "d", T0 + 2, u64::MAX, Some(d)),
        Admission::Granted(_)
    ));
    assert_eq!(tv(&ctl, &t, T0 + 2).waiting, 0);
}

#[test]
fn woken_waiters_recheck_circuit_and_backoff() {
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 1;
    let mut ctl = Controller::new(c);
    let t = claude();
    let a = grant(&mut ctl, &t, T0);
    let b = wait_id(ctl.try_admit(&t, "b", T0, u64::MAX, None));
    let c = wait_id(ctl.try_admit(&t, "c", T0, u64::MAX, None));
    ctl.complete(&t, a.lease_id, &Outcome::failure("upstream_503"), T0 + 100);
    assert_eq!(ctl.take_wakes(), vec![b]);
    match ctl.try_admit(&t, "b", T0 + 101, u64::MAX, Some(b)) {
        Admission::Refused(r) => assert_eq!(
            (r.code, r.retry_after_ms),
            (RefusalCode::CircuitOpen, 59_999)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(ctl.take_wakes(), vec![c]);
    match ctl.try_admit(&t, "c", T0 + 102, u64::MAX, Some(c)) {
        Admission::Refused(r) => assert_eq!(r.code, RefusalCode::CircuitOpen),
        other => panic!("{other:?}"),
    }
    assert!(ctl.take_wakes().is_empty());
    assert_eq!(tv(&ctl, &t, T0 + 102).waiting, 0);
}

// ---------------------------------------------------------------------------
// Rate limit

fn rate_cfg(n: u32, window_ms: u64) -> config::Policy {
    let mut c = cfg();
    c.rate_limit.requests_per_minute_per_platform = n;
    c.rate_limit.window_ms = window_ms;
    c
}

#[test]
fn rate_limit_delays_with_exact_values_and_never_refuses_unbounded_callers() {
    let mut ctl = Controller::new(rate_cfg(3, 60_000));
    let delays: Vec<u64> = (0..3)
        .map(|i| grant(&mut ctl, &target(&format!("c{i}"), "claude"), T0).rate_limit_delay_ms)
        .collect();
    assert_eq!(delays, vec![0, 0, 0]);
    // 4th at T0: until the oldest (T0) leaves the window.
    let g = grant(&mut ctl, &target("c3", "claude"), T0);
    assert_eq!(g.rate_limit_delay_ms, 60_000);
    assert_eq!(g.ready_at(), T0 + 60_000);
    // 5th at T0 + 10s: window holds T0, T0, T0, T0+60s → the 3rd-most-recent
    // (T0) leaves at T0 + 60s.
    let g = grant(&mut ctl, &target("c4", "claude"), T0 + 10_000);
    assert_eq!(g.rate_limit_delay_ms, 50_000);
    // 6th: T0 + 60s (x2) and T0: still T0 + 60s; 7th: next slot T0 + 120s.
    assert_eq!(
        grant(&mut ctl, &target("c5", "claude"), T0 + 10_000).rate_limit_delay_ms,
        50_000
    );
    assert_eq!(
        grant(&mut ctl, &target("c6", "claude"), T0 + 10_000).rate_limit_delay_ms,
        110_000
    );
    assert_eq!(
        pv(&ctl, "claude", T0 + 10_000).last_dispatched_at,
        Some(T0 + 120_000)
    );
    // Other platforms have their own window.
    assert_eq!(
        grant(&mut ctl, &target("c0", "chatgpt"), T0).rate_limit_delay_ms,
        0
    );
    // Once the window has passed, no delay.
    let later = T0 + 120_000 + 60_000;
    assert_eq!(
        grant(&mut ctl, &target("c7", "claude"), later).rate_limit_delay_ms,
        0
    );
    assert_eq!(pv(&ctl, "claude", later).recent_dispatch_count, 1);
}

#[test]
fn rate_limit_delay_function() {
    assert_eq!(rate_limit_delay_ms(&[], T0, 1, 60_000), 0);
    assert_eq!(rate_limit_delay_ms(&[T0 - 1_000], T0, 2, 60_000), 0);
    assert_eq!(rate_limit_delay_ms(&[T0 - 1_000], T0, 1, 60_000), 59_000);
    assert_eq!(
        rate_limit_delay_ms(&[T0 - 1_000, T0], T0, 1, 60_000),
        60_000
    );
    assert_eq!(rate_limit_delay_ms(&[T0 - 59_999, T0], T0, 2, 60_000), 1);
}

#[test]
fn charged_window_never_holds_more_than_n_dispatches() {
    // Property: over many admissions (bursts, gaps, many targets and
    // callers accepting any delay), every half-open window of window_ms
    // holds at most N charged dispatch times.
    for (n, window) in [(1u32, 1_000u64), (3, 10_000), (10, 60_000), (7, 333)] {
        let mut ctl = Controller::new(rate_cfg(n, window));
        let mut rnd = seeded(u64::from(n) * 7919 + window);
        let mut now = T0;
        let mut charged = Vec::new();
        for i in 0..2_000 {
            // Mostly bursts at the same ms, sometimes a gap up to 2 windows.
            if rnd() < 0.3 {
                now += (rnd() * 2.0 * window as f64) as i64;
            }
            let t = target(&format!("c{i}"), "claude");
            let g = grant(&mut ctl, &t, now);
            assert!(g.admitted_at == now);
            charged.push(g.admitted_at + g.rate_limit_delay_ms as i64);
            // Half of the leases complete at once, the rest never (targets
            // are distinct, so holding does not matter to the window).
            if i % 2 == 0 {
                ctl.complete(&t, g.lease_id, &Outcome::Success, now);
            }
        }
        assert!(
            max_in_any_window(&charged, window as i64) <= n as usize,
            "n={n} window={window}"
        );
        // Bounded memory: only in-window dispatches are kept.
        let last = *charged.iter().max().unwrap();
        grant(&mut ctl, &target("final", "claude"), last + window as i64);
        assert!(pv(&ctl, "claude", last + window as i64).recent_dispatch_count <= n as usize);
    }
}

#[test]
fn rate_limited_when_delay_exceeds_max_delay_without_charging_or_holding() {
    let mut ctl = Controller::new(rate_cfg(1, 60_000));
    let t = claude();
    let first = grant(&mut ctl, &target("other", "claude"), T0);
    ctl.complete(
        &target("other", "claude"),
        first.lease_id,
        &Outcome::Success,
        T0,
    );
    ctl.take_dirty();
    // Delay 50_000 > max 49_999 → refused, retry_after = delay.
    match ctl.try_admit(&t, "r", T0 + 10_000, 49_999, None) {
        Admission::Refused(r) => assert_eq!(
            (r.code, r.retry_after_ms),
            (RefusalCode::RateLimited, 50_000)
        ),
        other => panic!("{other:?}"),
    }
    assert!(!ctl.take_dirty());
    // The target is not held (a refused stranger is not even remembered).
    let view = ctl.view(Some("claude"), T0 + 10_000);
    assert!(view.targets.iter().all(|v| v.client_id != t.client_id));
    assert_eq!(view.platforms[0].recent_dispatch_count, 1);
    assert_eq!(view.platforms[0].waiting, 0);
    // Exactly at max_delay it is admitted, with the same delay (nothing was
    // charged by the refusal).
    match ctl.try_admit(&t, "r", T0 + 10_000, 50_000, None) {
        Admission::Granted(g) => assert_eq!(g.rate_limit_delay_ms, 50_000),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rate_limited_refusal_of_a_woken_waiter_passes_the_turn() {
    let mut ctl = Controller::new(rate_cfg(1, 60_000));
    let t = claude();
    let a = grant(&mut ctl, &t, T0);
    let b = wait_id(ctl.try_admit(&t, "b", T0, 0, None));
    let c = wait_id(ctl.try_admit(&t, "c", T0, u64::MAX, None));
    ctl.complete(&t, a.lease_id, &Outcome::Success, T0 + 1);
    assert_eq!(ctl.take_wakes(), vec![b]);
    assert!(matches!(
        ctl.try_admit(&t, "b", T0 + 1, 0, Some(b)),
        Admission::Refused(Refusal {
            code: RefusalCode::RateLimited,
            retry_after_ms: 59_999
        })
    ));
    assert_eq!(ctl.take_wakes(), vec![c]);
    match ctl.try_admit(&t, "c", T0 + 1, u64::MAX, Some(c)) {
        Admission::Granted(g) => assert_eq!(g.rate_limit_delay_ms, 59_999),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Jitter

fn jitter(min_ms: u64, max_ms: u64, mu_ms: u64, sigma_ms: u64) -> config::Jitter {
    config::Jitter {
        min_ms,
        max_ms,
        mu_ms,
        sigma_ms,
    }
}

#[test]
fn jitter_is_zero_when_off_and_draws_nothing() {
    let draws = std::cell::Cell::new(0);
    let mut counting = || {
        draws.set(draws.get() + 1);
        0.5
    };
    assert_eq!(sample_jitter_ms(&jitter(0, 0, 0, 0), &mut counting), 0);
    assert_eq!(sample_jitter_ms(&jitter(0, 0, 500, 100), &mut counting), 0);
    assert_eq!(draws.get(), 0);
    // sigma 0: mu, clamped.
    assert_eq!(
        sample_jitter_ms(&jitter(0, 1_000, 300, 0), &mut counting),
        300
    );
    assert_eq!(
        sample_jitter_ms(&jitter(0, 200, 300, 0), &mut counting),
        200
    );
    assert_eq!(
        sample_jitter_ms(&jitter(400, 900, 300, 0), &mut counting),
        400
    );
    assert_eq!(draws.get(), 0);
}

#[test]
fn jitter_is_normal_and_clamped() {
    // Extremes of the uniform inputs stay clamped and finite.
    let j = jitter(100, 900, 500, 200);
    for (u1, u2) in [
        (0.0, 0.0),
        (0.999_999_999, 0.0),
        (0.999_999_999, 0.5),
        (0.5, 0.25),
        (0.0, 0.5),
    ] {
        let mut seq = [u1, u2].into_iter();
        let v = sample_jitter_ms(&j, &mut || seq.next().unwrap());
        assert!((100..=900).contains(&v), "{v}");
    }
    // 1 - u1 = 1 → z = 0 → exactly mu.
    let mut seq = [0.0, 0.3].into_iter();
    assert_eq!(sample_jitter_ms(&j, &mut || seq.next().unwrap()), 500);
    // u1 → tiny, u2 = 0 → z large positive → max; u2 = 0.5 → min.
    let mut seq = [0.999_999_999, 0.0].into_iter();
    assert_eq!(sample_jitter_ms(&j, &mut || seq.next().unwrap()), 900);
    let mut seq = [0.999_999_999, 0.5].into_iter();
    assert_eq!(sample_jitter_ms(&j, &mut || seq.next().unwrap()), 100);
    // Distribution: mean ≈ mu, sd ≈ sigma when the clamp is wide.
    let wide = jitter(0, 100_000, 5_000, 1_000);
    let mut rnd = seeded(42);
    let samples: Vec<f64> = (0..20_000)
        .map(|_| sample_jitter_ms(&wide, &mut rnd) as f64)
        .collect();
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    let sd =
        (samples.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / samples.len() as f64).sqrt();
    assert!((mean - 5_000.0).abs() < 30.0, "mean {mean}");
    assert!((sd - 1_000.0).abs() < 30.0, "sd {sd}");
}

#[test]
fn jitter_is_added_to_the_lease_and_counts_against_max_delay() {
    let mut c = cfg();
    c.jitter = jitter(250, 250, 250, 0);
    let mut ctl = Controller::new(c);
    let t = claude();
    let g = grant(&mut ctl, &t, T0);
    assert_eq!(
        (g.rate_limit_delay_ms, g.jitter_ms, g.ready_at()),
        (0, 250, T0 + 250)
    );
    ctl.complete(&t, g.lease_id, &Outcome::Success, T0);
    // Jitter alone over max_delay: refused rate_limited, retry_after = the
    // rate-limit delay (0 here), nothing charged.
    assert_eq!(
        ctl.try_admit(&t, "r", T0, 249, None),
        Admission::Refused(Refusal {
            code: RefusalCode::RateLimited,
            retry_after_ms: 0
        })
    );
    assert_eq!(pv(&ctl, "claude", T0).recent_dispatch_count, 1);
    assert!(matches!(
        ctl.try_admit(&t, "r", T0, 250, None),
        Admission::Granted(_)
    ));
}

// ---------------------------------------------------------------------------
// Completion, stale sweep

#[test]
fn completing_twice_or_a_foreign_lease_changes_nothing() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let g = grant(&mut ctl, &t, T0);
    assert!(!ctl.complete(&t, g.lease_id + 1, &Outcome::Success, T0));
    assert!(!ctl.complete(
        &target("nobody", "claude"),
        g.lease_id,
        &Outcome::Success,
        T0
    ));
    assert!(ctl.complete(&t, g.lease_id, &Outcome::failure("x"), T0));
    ctl.take_dirty();
    assert!(!ctl.complete(&t, g.lease_id, &Outcome::failure("x"), T0));
    assert!(!ctl.complete(&t, g.lease_id, &Outcome::Success, T0));
    assert!(!ctl.take_dirty());
    assert_eq!(tv(&ctl, &t, T0).consecutive_failures, 1);
}

#[test]
fn stale_sweep_releases_idle_leases_with_diagnostics() {
    let mut c = cfg();
    c.stale_lease.idle_ms = 1_000;
    c.rate_limit.requests_per_minute_per_platform = 1;
    let mut ctl = Controller::new(c);
    let t = claude();
    let first = grant(&mut ctl, &t, T0);
    let w = wait_id(ctl.try_admit(&t, "next", T0, u64::MAX, None));
    assert!(ctl.sweep(T0 + 999).is_empty());
    let swept = ctl.sweep(T0 + 1_000);
    assert_eq!(
        swept,
        vec![Swept {
            target: t.clone(),
            lease_id: first.lease_id,
            request_id: "req".to_string(),
            idle_ms: 1_000,
            trial: false,
        }]
    );
    let v = tv(&ctl, &t, T0 + 1_000);
    assert_eq!(v.stale_sweep_count, 1);
    assert_eq!(v.last_stale_sweep_at, Some(T0 + 1_000));
    assert_eq!(v.last_stale_sweep_idle_ms, Some(1_000));
    assert_eq!(
        v.last_stale_sweep_reason.as_deref(),
        Some("admitted:lease_idle_timeout")
    );
    assert_eq!(v.last_stale_sweep_request_id.as_deref(), Some("req"));
    assert_eq!(v.last_activity_reason.as_deref(), Some("stale_sweep"));
    assert_eq!(v.last_activity_at, Some(T0 + 1_000));
    assert_eq!(
        (v.consecutive_failures, v.circuit_state),
        (0, CircuitState::Closed)
    );
    assert!(ctl.take_dirty());
    // The waiter gets the turn; the swept owner's completion is ignored.
    assert_eq!(ctl.take_wakes(), vec![w]);
    assert!(!ctl.complete(&t, first.lease_id, &Outcome::failure("late"), T0 + 1_001));
    assert_eq!(tv(&ctl, &t, T0 + 1_001).consecutive_failures, 0);

    // Idle time counts from ready_at (delayed lease), then from touches.
    let g = match ctl.try_admit(&t, "delayed", T0 + 1_001, u64::MAX, Some(w)) {
        Admission::Granted(g) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(g.rate_limit_delay_ms, 58_999);
    let ready = g.ready_at();
    assert_eq!(ready, T0 + 60_000);
    assert!(ctl.sweep(ready + 999).is_empty());
    assert!(ctl.touch(&t, g.lease_id, "stream_event", ready + 900));
    assert!(ctl.sweep(ready + 1_899).is_empty());
    let swept = ctl.sweep(ready + 1_900);
    assert_eq!(swept.len(), 1);
    let v = tv(&ctl, &t, ready + 1_900);
    assert_eq!(v.stale_sweep_count, 2);
    assert_eq!(
        v.last_stale_sweep_reason.as_deref(),
        Some("stream_event:lease_idle_timeout")
    );
    assert_eq!(v.last_stale_sweep_request_id.as_deref(), Some("delayed"));
    assert!(!ctl.touch(&t, g.lease_id, "late", ready + 2_000));
}

// ---------------------------------------------------------------------------
// Persistence

#[test]
fn persisted_document_has_exactly_the_spec_keys_and_round_trips() {
    let mut c = circuit_cfg();
    c.stale_lease.idle_ms = 10;
    let mut ctl = Controller::new(c.clone());
    let t = claude();
    open_circuit(&mut ctl, &t);
    let other = target("firefox-2", "chatgpt");
    let g = grant(&mut ctl, &other, T0 + 3_000);
    ctl.sweep(T0 + 3_100);
    assert_eq!(tv(&ctl, &other, T0 + 3_100).stale_sweep_count, 1);
    let g2 = grant(&mut ctl, &other, T0 + 3_200);
    ctl.complete(&other, g2.lease_id, &Outcome::Success, T0 + 3_300);
    let _ = g;

    let json = ctl.persisted_json(T0 + 3_300);
    assert!(json.starts_with(r#"{"version":1,"platforms":["#), "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&doc), ["platforms", "targets", "version"]);
    let platform = &doc["platforms"][0];
    assert_eq!(
        keys(platform),
        ["dispatches", "last_dispatched_at", "platform"]
    );
    let target_keys = [
        "backoff_until",
        "circuit_retry_at",
        "circuit_state",
        "client_id",
        "consecutive_failures",
        "last_activity_at",
        "last_activity_reason",
        "last_error",
        "last_failure_at",
        "last_stale_sweep_at",
        "last_stale_sweep_idle_ms",
        "last_stale_sweep_reason",
        "last_stale_sweep_request_id",
        "last_success_at",
        "platform",
        "stale_sweep_count",
    ];
    for entry in doc["targets"].as_array().unwrap() {
        assert_eq!(keys(entry), target_keys);
    }
    assert_eq!(doc["targets"].as_array().unwrap().len(), 2);
    assert_eq!(
        doc["platforms"][1]["dispatches"],
        serde_json::json!([T0, T0 + 1_000, T0 + 3_000])
    );

    // Round trip: a fresh controller restored at the same time writes the
    // same document and shows the same view (minus process-local fields).
    let mut restored = Controller::new(c);
    assert_eq!(restored.restore(&json, T0 + 3_300), Ok(0));
    assert_eq!(restored.persisted_json(T0 + 3_300), json);
    assert_eq!(
        restored.view(None, T0 + 3_300),
        ctl.view(None, T0 + 3_300),
        "no lease or waiter was live"
    );
    assert!(!restored.take_dirty(), "restoring is not a change to save");
}

#[test]
fn restore_drops_out_of_window_dispatches_and_reopens_half_open() {
    let mut c = circuit_cfg();
    c.rate_limit.window_ms = 120_000;
    let mut ctl = Controller::new(c.clone());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let trial_at = opened + 60_000;
    let g = grant(&mut ctl, &t, trial_at);
    assert!(g.trial);
    let json = ctl.persisted_json(trial_at);
    assert!(json.contains(r#""circuit_state":"half_open""#));
    let all = format!(r#""dispatches":[{T0},{},{opened},{trial_at}]"#, T0 + 1_000);
    assert!(json.contains(&all), "{json}");

    // Restart 62 s later: the first three dispatches are out of the window.
    let later = trial_at + 62_000;
    let mut fresh = Controller::new(c);
    fresh.restore(&json, later).unwrap();
    let v = tv(&fresh, &t, later);
    assert_eq!(v.circuit_state, CircuitState::Open);
    assert_eq!(v.circuit_retry_at, Some(trial_at));
    assert_eq!((v.in_flight, v.waiting), (0, 0));
    let p = pv(&fresh, "claude", later);
    assert_eq!(p.recent_dispatch_count, 1);
    assert_eq!(p.last_dispatched_at, Some(trial_at));
    let saved = fresh.persisted_json(later);
    assert!(
        saved.contains(&format!(r#""dispatches":[{trial_at}]"#)),
        "{saved}"
    );
    assert!(saved.contains(r#""circuit_state":"open""#));
    // The retry time has passed: the next caller is the new trial.
    assert!(grant(&mut fresh, &t, later).trial);
}

#[test]
fn broken_or_unknown_documents_are_ignored() {
    let clean = Controller::new(cfg()).view(None, T0);
    for doc in [
        "",
        "not json",
        "[]",
        "{\"version\":2,\"platforms\":[],\"targets\":[]}",
        "{\"platforms\":[],\"targets\":[]}",
        "{\"version\":\"1\"}",
        "{\"version\":1,\"platforms\":[",
    ] {
        let mut ctl = Controller::new(cfg());
        assert!(ctl.restore(doc, T0).is_err(), "{doc:?}");
        assert_eq!(ctl.view(None, T0), clean);
    }
    // Malformed entries are skipped, good ones kept; missing optional
    // fields read as null, unknown circuit states as closed.
    let mut ctl = Controller::new(cfg());
    let doc = format!(
        r#"{{"version":1,
            "platforms":[{{"platform":"claude","dispatches":[{T0},"x"]}},{{"platform":""}},{{"dispatches":[1]}},
                         {{"platform":"gemini","dispatches":[{later}, {T0}]}}],
            "targets":[{{"client_id":"a","platform":"claude","circuit_state":"weird","consecutive_failures":2}},
                       {{"client_id":"","platform":"claude"}},{{"client_id":"b"}},7]}}"#,
        later = T0 + 5
    );
    assert_eq!(ctl.restore(&doc, T0 + 10), Ok(6));
    let view = ctl.view(None, T0 + 10);
    assert_eq!(view.platforms.len(), 2);
    assert_eq!(view.platforms[0].platform, "claude");
    assert_eq!(view.platforms[0].recent_dispatch_count, 0);
    assert_eq!(view.platforms[1].recent_dispatch_count, 2);
    assert_eq!(view.targets.len(), 1);
    assert_eq!(view.targets[0].circuit_state, CircuitState::Closed);
    assert_eq!(view.targets[0].consecutive_failures, 2);
    assert_eq!(view.targets[0].last_error, None);
}

#[test]
fn view_filters_by_platform() {
    let mut ctl = Controller::new(cfg());
    grant(&mut ctl, &target("a", "claude"), T0);
    grant(&mut ctl, &target("a", "chatgpt"), T0);
    wait_id(ctl.try_admit(&target("a", "chatgpt"), "w", T0, u64::MAX, None));
    let all = ctl.view(None, T0);
    assert_eq!(all.platforms.len(), 2);
    assert_eq!(all.targets.len(), 2);
    assert_eq!(all.defaults, cfg());
    let chatgpt = ctl.view(Some("chatgpt"), T0);
    assert_eq!(chatgpt.platforms.len(), 1);
    assert_eq!(chatgpt.platforms[0].waiting, 1);
    assert_eq!(chatgpt.targets.len(), 1);
    assert_eq!(chatgpt.targets[0].waiting, 1);
    assert!(ctl.view(Some("gemini"), T0).targets.is_empty());
    let json = serde_json::to_value(&chatgpt).unwrap();
    assert_eq!(json["targets"][0]["circuit_state"], "closed");
    assert_eq!(json["targets"][0]["in_flight"], 1);
    assert_eq!(json["platforms"][0]["recent_dispatch_count"], 1);
    assert_eq!(json["defaults"]["rate_limit"]["window_ms"], 60_000);
}

// ---------------------------------------------------------------------------
// Policy (thread-safe wrapper)

#[test]
fn seed_scenario_open_circuit_survives_a_restart() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 1;
    c.circuit_breaker.open_ms = 60_000;
    let first = manual_policy(c.clone(), &clock);
    let t = target("firefox-claude", "claude");
    let lease = first
        .admit(
            t.clone(),
            "request-persisted-circuit",
            AdmitOptions::default(),
        )
        .unwrap();
    assert!(lease.complete(Outcome::failure("upstream_429")));
    let refused = first
        .admit(t.clone(), "again", AdmitOptions::default())
        .unwrap_err();
    assert_eq!(
        refused,
        Refusal {
            code: RefusalCode::CircuitOpen,
            retry_after_ms: 60_000
        }
    );
    let json = first.persisted_json();

    let restarted = manual_policy(c, &clock);
    restarted.restore(&json);
    let view = restarted.view(Some("claude"));
    assert_eq!(view.platforms[0].recent_dispatch_count, 1);
    let refused = restarted
        .admit(t.clone(), "request-after-restart", AdmitOptions::default())
        .unwrap_err();
    assert_eq!(refused.code.as_str(), "circuit_open");
    assert_eq!(refused.retry_after_ms, 60_000);
    clock.advance(59_000);
    assert_eq!(
        restarted
            .admit(t, "r", AdmitOptions::default())
            .unwrap_err()
            .retry_after_ms,
        1_000
    );
}

#[test]
fn seed_scenario_rate_window_survives_a_restart() {
    let clock = Arc::new(ManualClock::new(T0));
    let c = rate_cfg(1, 60_000);
    let first = manual_policy(c.clone(), &clock);
    let t = target("firefox-chatgpt", "chatgpt");
    let lease = first
        .admit(
            t.clone(),
            "request-persisted-rate-limit",
            AdmitOptions::default(),
        )
        .unwrap();
    assert_eq!(lease.rate_limit_delay_ms, 0);
    lease.complete(Outcome::Success);
    let json = first.persisted_json();

    let restarted = manual_policy(c.clone(), &clock);
    restarted.restore(&json);
    assert_eq!(
        restarted.view(Some("chatgpt")).platforms[0].recent_dispatch_count,
        1
    );
    let delayed = restarted
        .admit(t.clone(), "request-after-restart", AdmitOptions::default())
        .unwrap();
    assert_eq!(delayed.rate_limit_delay_ms, 60_000);
    assert_eq!(delayed.ready_at(), T0 + 60_000);
    assert_eq!(delayed.remaining_delay_ms(), 60_000);
    delayed.complete(Outcome::Cancelled);

    // Restarting 15 s later: the rest of the window.
    clock.advance(15_000);
    let again = manual_policy(c, &clock);
    again.restore(&json);
    let delayed = again.admit(t, "r", AdmitOptions::default()).unwrap();
    assert_eq!(delayed.rate_limit_delay_ms, 45_000);
}

#[test]
fn dropping_a_lease_cancels_it_and_late_completion_is_ignored() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.stale_lease.idle_ms = 1_000;
    let policy = manual_policy(c, &clock);
    let t = claude();
    {
        let lease = policy
            .admit(t.clone(), "dropped", AdmitOptions::default())
            .unwrap();
        assert_eq!(policy.view(None).targets[0].in_flight, 1);
        let _ = &lease;
    }
    let v = &policy.view(None).targets[0];
    assert_eq!(v.in_flight, 0);
    assert_eq!(
        v.last_activity_reason.as_deref(),
        Some("complete_cancelled")
    );

    let lease = policy
        .admit(t.clone(), "swept", AdmitOptions::default())
        .unwrap();
    assert!(lease.touch("stream_event"));
    clock.advance(1_000);
    assert_eq!(policy.sweep(), 1);
    assert!(!lease.touch("late"));
    assert!(!lease.complete(Outcome::failure("late")));
    let v = &policy.view(None).targets[0];
    assert_eq!(v.consecutive_failures, 0);
    assert_eq!(v.stale_sweep_count, 1);
    assert_eq!(
        v.last_stale_sweep_reason.as_deref(),
        Some("stream_event:lease_idle_timeout")
    );
}

#[test]
fn on_change_runs_after_the_lock_is_released_for_each_persisted_change() {
    let clock = Arc::new(ManualClock::new(T0));
    let calls = Arc::new(AtomicUsize::new(0));
    let me: Arc<OnceLock<Weak<Policy>>> = Arc::new(OnceLock::new());
    let (calls2, me2) = (calls.clone(), me.clone());
    let policy = Policy::new(
        rate_cfg(1, 60_000),
        clock.clone(),
        Box::new(move || {
            // Re-entering the policy would deadlock if the lock were held.
            if let Some(policy) = me2.get().and_then(Weak::upgrade) {
                let _ = policy.persisted_json();
            }
            calls2.fetch_add(1, Ordering::SeqCst);
        }),
    );
    me.set(Arc::downgrade(&policy)).unwrap();
    let t = claude();
    let lease = policy
        .admit(t.clone(), "a", AdmitOptions::default())
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    lease.complete(Outcome::Success);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A refusal changes nothing persisted.
    let opts = AdmitOptions {
        max_delay_ms: 0,
        ..AdmitOptions::default()
    };
    assert_eq!(
        policy.admit(t, "b", opts).unwrap_err().code,
        RefusalCode::RateLimited
    );
    let _ = policy.view(None);
    assert_eq!(policy.sweep(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Waits (really) until `cond` holds, up to 5 s.
fn eventually(cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "condition never held"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn five_blocked_waiters_are_served_in_fifo_order() {
    let clock = Arc::new(ManualClock::new(T0));
    let policy = manual_policy(cfg(), &clock);
    let t = claude();
    let holder = policy
        .admit(t.clone(), "holder", AdmitOptions::default())
        .unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..5 {
        let (shared, t, order) = (policy.clone(), t.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let opts = AdmitOptions {
                max_wait: Duration::from_secs(30),
                max_delay_ms: u64::MAX,
            };
            let lease = shared.admit(t, &format!("w{i}"), opts).unwrap();
            order.lock().push(i);
            lease.complete(Outcome::Success);
        }));
        // Make sure waiter i is queued before waiter i+1 arrives.
        eventually(|| policy.view(None).targets[0].waiting == i + 1);
    }
    assert!(order.lock().is_empty());
    holder.complete(Outcome::Success);
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    let v = &policy.view(None).targets[0];
    assert_eq!((v.in_flight, v.waiting), (0, 0));
}

#[test]
fn a_waiter_gives_up_after_the_effective_wait() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.waiter_timeout_ms = 40;
    let policy = manual_policy(c, &clock);
    let t = claude();
    let holder = policy
        .admit(t.clone(), "holder", AdmitOptions::default())
        .unwrap();
    let timeout = Refusal {
        code: RefusalCode::WaiterTimeout,
        retry_after_ms: 0,
    };

    // max_wait bounds the wait…
    let start = Instant::now();
    let opts = AdmitOptions {
        max_wait: Duration::from_millis(20),
        max_delay_ms: u64::MAX,
    };
    assert_eq!(policy.admit(t.clone(), "w", opts).unwrap_err(), timeout);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(20) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    // …and so does waiter_timeout_ms.
    let start = Instant::now();
    let opts = AdmitOptions {
        max_wait: Duration::from_secs(60),
        max_delay_ms: u64::MAX,
    };
    assert_eq!(policy.admit(t.clone(), "w", opts).unwrap_err(), timeout);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(40) && waited < Duration::from_secs(20),
        "{waited:?}"
    );
    // max_wait zero: a busy target is refused at once.
    let opts = AdmitOptions {
        max_wait: Duration::ZERO,
        max_delay_ms: u64::MAX,
    };
    assert_eq!(policy.admit(t.clone(), "w", opts).unwrap_err(), timeout);
    assert_eq!(policy.view(None).targets[0].waiting, 0);

    // The holder completing later still works, and nobody is left queued.
    holder.complete(Outcome::Success);
    policy
        .admit(t, "after", AdmitOptions::default())
        .unwrap()
        .complete(Outcome::Success);
}

#[test]
fn a_blocked_waiter_is_refused_when_the_holder_opens_the_circuit() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 1;
    let policy = manual_policy(c, &clock);
    let t = claude();
    let holder = policy
        .admit(t.clone(), "holder", AdmitOptions::default())
        .unwrap();
    let waiter = {
        let (policy, t) = (policy.clone(), t.clone());
        std::thread::spawn(move || {
            let opts = AdmitOptions {
                max_wait: Duration::from_secs(30),
                max_delay_ms: u64::MAX,
            };
            policy.admit(t, "w", opts).map(|lease| lease.lease_id)
        })
    };
    eventually(|| policy.view(None).targets[0].waiting == 1);
    clock.advance(10);
    holder.complete(Outcome::failure("upstream_500"));
    let refused = waiter.join().unwrap().unwrap_err();
    assert_eq!(
        (refused.code, refused.retry_after_ms),
        (RefusalCode::CircuitOpen, 60_000)
    );
}

#[test]
fn concurrent_admissions_never_overshoot_the_window() {
    let clock = Arc::new(ManualClock::new(T0));
    let policy = manual_policy(rate_cfg(4, 60_000), &clock);
    let charged = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let (policy, charged) = (policy.clone(), charged.clone());
            std::thread::spawn(move || {
                for i in 0..25 {
                    let t = target(&format!("c{thread}-{i}"), "claude");
                    let lease = policy.admit(t, "r", AdmitOptions::default()).unwrap();
                    charged
                        .lock()
                        .push(lease.admitted_at + lease.rate_limit_delay_ms as i64);
                    lease.complete(Outcome::Success);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let charged = charged.lock();
    assert_eq!(charged.len(), 200);
    assert_eq!(max_in_any_window(&charged, 60_000), 4);
    // 200 slots of 4 per minute from T0: the last is 49 minutes later.
    assert_eq!(*charged.iter().max().unwrap(), T0 + 49 * 60_000);
}

#[test]
fn the_sweeper_thread_sweeps_until_stopped() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.stale_lease.idle_ms = 1_000;
    c.stale_lease.sweep_interval_ms = 5;
    let policy = manual_policy(c, &clock);
    let lease = policy
        .admit(claude(), "stuck", AdmitOptions::default())
        .unwrap();
    let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
    let handle = policy.spawn_sweeper(stop_rx).unwrap();
    assert_eq!(handle.thread().name(), Some("policy-sweeper"));
    clock.advance(1_000);
    eventually(|| policy.view(None).targets[0].in_flight == 0);
    assert_eq!(policy.view(None).targets[0].stale_sweep_count, 1);
    stop_tx.send(()).unwrap();
    handle.join().unwrap();
    assert!(!lease.complete(Outcome::Success));
}

#[test]
fn restore_of_a_broken_document_starts_clean() {
    let clock = Arc::new(ManualClock::new(T0));
    let policy = manual_policy(cfg(), &clock);
    policy.restore("{\"version\":99}");
    policy.restore("garbage");
    assert!(policy.view(None).targets.is_empty());
    assert_eq!(
        policy.persisted_json(),
        r#"{"version":1,"platforms":[],"targets":[]}"#
    );
    assert_eq!(policy.config(), &cfg());
}

#[test]
fn deterministic_jitter_through_the_policy() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.jitter = jitter(100, 900, 500, 200);
    let ctl = Controller::with_random(c, Box::new(seeded(7)));
    let policy = Policy::with_controller(ctl, clock.clone(), noop());
    for i in 0..50 {
        let lease = policy
            .admit(
                target(&format!("c{i}"), "claude"),
                "r",
                AdmitOptions::default(),
            )
            .unwrap();
        assert!((100..=900).contains(&lease.jitter_ms));
        assert_eq!(
            lease.ready_at(),
            lease.admitted_at + lease.rate_limit_delay_ms as i64 + lease.jitter_ms as i64
        );
        lease.complete(Outcome::Success);
    }
}
