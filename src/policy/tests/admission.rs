//! Tests of admission basics: a fresh target's grant and the API names of
//! refusal codes and circuit states.

use super::*;

#[test]
fn fresh_target_is_admitted_at_once_and_recorded() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let g = grant(&mut ctl, &t, T0);
    assert_eq!((g.admitted_at, g.rate_limit_delay_ms, g.jitter_ms, g.trial), (T0, 0, 0, false));
    assert_eq!(g.ready_at(), T0);
    let v = tv(&ctl, &t, T0);
    assert_eq!(v.circuit_state, CircuitState::Closed);
    assert_eq!((v.in_flight, v.waiting), (1, 0));
    assert_eq!(v.last_activity_at, Some(T0));
    assert_eq!(v.last_activity_reason.as_deref(), Some("admitted"));
    let p = pv(&ctl, "claude", T0);
    assert_eq!((p.recent_dispatch_count, p.last_dispatched_at, p.waiting), (1, Some(T0), 0));
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
    let r = Refusal { code: RefusalCode::RateLimited, retry_after_ms: 5 };
    assert_eq!(
        serde_json::to_value(r).unwrap(),
        serde_json::json!({"code": "rate_limited", "retry_after_ms": 5})
    );
}

/// Every lease has its own id, so a late completion of an old lease can
/// never complete the one in flight now.
#[test]
fn lease_ids_increase_and_an_old_id_completes_nothing() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let first = grant(&mut ctl, &t, T0);
    assert!(ctl.complete(&t, first.lease_id, &Outcome::Success, T0 + 1));
    let second = grant(&mut ctl, &t, T0 + 2);
    let elsewhere = grant(&mut ctl, &target("firefox-2", "chatgpt"), T0 + 2);
    assert!(first.lease_id < second.lease_id && second.lease_id < elsewhere.lease_id);
    assert!(!ctl.complete(&t, first.lease_id, &Outcome::failure("late"), T0 + 3));
    assert_eq!(tv(&ctl, &t, T0 + 3).in_flight, 1, "the second lease is still out");
    assert!(ctl.complete(&t, second.lease_id, &Outcome::Success, T0 + 4));
}
