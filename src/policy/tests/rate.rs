//! Tests of the per-platform sliding-window rate limit.

use super::*;

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
    assert_eq!(grant(&mut ctl, &target("c5", "claude"), T0 + 10_000).rate_limit_delay_ms, 50_000);
    assert_eq!(grant(&mut ctl, &target("c6", "claude"), T0 + 10_000).rate_limit_delay_ms, 110_000);
    assert_eq!(pv(&ctl, "claude", T0 + 10_000).last_dispatched_at, Some(T0 + 120_000));
    // Other platforms have their own window.
    assert_eq!(grant(&mut ctl, &target("c0", "chatgpt"), T0).rate_limit_delay_ms, 0);
    // Once the window has passed, no delay.
    let later = T0 + 120_000 + 60_000;
    assert_eq!(grant(&mut ctl, &target("c7", "claude"), later).rate_limit_delay_ms, 0);
    assert_eq!(pv(&ctl, "claude", later).recent_dispatch_count, 1);
}

#[test]
fn rate_limit_delay_function() {
    assert_eq!(rate_limit_delay_ms(&[], T0, 1, 60_000), 0);
    assert_eq!(rate_limit_delay_ms(&[T0 - 1_000], T0, 2, 60_000), 0);
    assert_eq!(rate_limit_delay_ms(&[T0 - 1_000], T0, 1, 60_000), 59_000);
    assert_eq!(rate_limit_delay_ms(&[T0 - 1_000, T0], T0, 1, 60_000), 60_000);
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
        assert!(max_in_any_window(&charged, window as i64) <= n as usize, "n={n} window={window}");
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
    ctl.complete(&target("other", "claude"), first.lease_id, &Outcome::Success, T0);
    ctl.take_dirty();
    // Delay 50_000 > max 49_999 → refused, retry_after = delay.
    match ctl.try_admit(&t, "r", T0 + 10_000, 49_999, None) {
        Admission::Refused(r) => assert_eq!((r.code, r.retry_after_ms), (RefusalCode::RateLimited, 50_000)),
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
        Admission::Refused(Refusal { code: RefusalCode::RateLimited, retry_after_ms: 59_999 })
    ));
    assert_eq!(ctl.take_wakes(), vec![c]);
    match ctl.try_admit(&t, "c", T0 + 1, u64::MAX, Some(c)) {
        Admission::Granted(g) => assert_eq!(g.rate_limit_delay_ms, 59_999),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_the_last_limit_dispatches_are_kept_and_delays_are_unchanged() {
    // A reference list that keeps every in-window dispatch gives the same
    // delays as the controller, which keeps only the `limit` most recent.
    let (limit, window) = (3u32, 60_000u64);
    let mut ctl = Controller::new(rate_cfg(limit, window));
    let mut all: Vec<i64> = Vec::new();
    for i in 0..200 {
        let now = T0 + i * 7_000;
        all.retain(|&t| t > now - window as i64);
        let expected = rate_limit_delay_ms(&all, now, limit, window);
        let g = grant(&mut ctl, &target(&format!("c{i}"), "claude"), now);
        assert_eq!(g.rate_limit_delay_ms, expected, "admission {i}");
        all.push(now + g.rate_limit_delay_ms as i64);
        all.sort_unstable();
    }
    let doc: serde_json::Value = serde_json::from_str(&ctl.persisted_json(T0 + 200 * 7_000)).unwrap();
    let kept = doc["platforms"][0]["dispatches"].as_array().unwrap().len();
    assert!(kept <= limit as usize, "persisted {kept} dispatch times");
}
