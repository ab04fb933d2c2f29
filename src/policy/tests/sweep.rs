//! Tests of lease completion (double or foreign completions) and the
//! stale-lease sweep.

use super::*;
use crate::policy::controller::FORGET_AFTER_MS;

#[test]
fn completing_twice_or_a_foreign_lease_changes_nothing() {
    let mut ctl = Controller::new(cfg());
    let t = claude();
    let g = grant(&mut ctl, &t, T0);
    assert!(!ctl.complete(&t, g.lease_id + 1, &Outcome::Success, T0));
    assert!(!ctl.complete(&target("nobody", "claude"), g.lease_id, &Outcome::Success, T0));
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
    assert_eq!(v.last_stale_sweep_reason.as_deref(), Some("admitted:lease_idle_timeout"));
    assert_eq!(v.last_stale_sweep_request_id.as_deref(), Some("req"));
    assert_eq!(v.last_activity_reason.as_deref(), Some("stale_sweep"));
    assert_eq!(v.last_activity_at, Some(T0 + 1_000));
    assert_eq!((v.consecutive_failures, v.circuit_state), (0, CircuitState::Closed));
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
    assert_eq!(v.last_stale_sweep_reason.as_deref(), Some("stream_event:lease_idle_timeout"));
    assert_eq!(v.last_stale_sweep_request_id.as_deref(), Some("delayed"));
    assert!(!ctl.touch(&t, g.lease_id, "late", ready + 2_000));
}

#[test]
fn the_sweep_forgets_targets_quiet_for_thirty_days_unless_their_circuit_is_open() {
    let mut ctl = Controller::new(circuit_cfg());
    let quiet = claude();
    let g = grant(&mut ctl, &quiet, T0);
    assert!(ctl.complete(&quiet, g.lease_id, &Outcome::Success, T0));
    let broken = target("broken", "claude");
    let opened = open_circuit(&mut ctl, &broken);
    let clients = |ctl: &Controller, now| -> Vec<String> {
        ctl.view(Some("claude"), now).targets.into_iter().map(|v| v.client_id).collect()
    };
    ctl.take_dirty();
    ctl.sweep(T0 + FORGET_AFTER_MS - 1);
    assert_eq!(clients(&ctl, T0 + FORGET_AFTER_MS - 1), ["broken", "firefox-1"]);
    assert!(!ctl.take_dirty(), "nothing forgotten, nothing to save");
    ctl.sweep(T0 + FORGET_AFTER_MS);
    assert_eq!(clients(&ctl, T0 + FORGET_AFTER_MS), ["broken"], "the open circuit is kept");
    assert!(ctl.take_dirty(), "the forgetting is saved");
    ctl.sweep(opened + 10 * FORGET_AFTER_MS);
    assert_eq!(clients(&ctl, opened + 10 * FORGET_AFTER_MS), ["broken"]);
    // A forgotten target that comes back starts afresh.
    let later = T0 + FORGET_AFTER_MS + 1;
    let g = grant(&mut ctl, &quiet, later);
    assert!(ctl.complete(&quiet, g.lease_id, &Outcome::Success, later));
    let v = tv(&ctl, &quiet, later);
    assert_eq!((v.circuit_state, v.consecutive_failures), (CircuitState::Closed, 0));
}
