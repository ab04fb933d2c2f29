//! Tests of the exponential backoff after failures, and of cancelled
//! completions changing no counter.

use super::*;

#[test]
fn backoff_doubles_from_base_and_is_capped() {
    let expected = [0, 5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000];
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
    for (n, backoff) in
        [5_000i64, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000].into_iter().enumerate()
    {
        fail(&mut ctl, &t, now);
        let v = tv(&ctl, &t, now);
        assert_eq!(v.consecutive_failures, n as u32 + 1);
        assert_eq!(v.backoff_until, Some(now + backoff));
        assert_eq!(v.circuit_state, CircuitState::Closed);
        let r = refusal(&mut ctl, &t, now + 1);
        assert_eq!((r.code, r.retry_after_ms), (RefusalCode::BackoffActive, backoff as u64 - 1));
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
    assert_eq!(after.last_activity_reason.as_deref(), Some("complete_cancelled"));
    assert_eq!(after.in_flight, 0);
    grant(&mut ctl, &t, T0 + 5_001);
}
