//! Tests of one request in flight per target and the FIFO waiter queue
//! bookkeeping of the controller.

use super::*;

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
    assert_eq!(wait_id(ctl.try_admit(&t, "c", T0 + 11, u64::MAX, Some(c))), c);
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
    assert!(matches!(ctl.try_admit(&t, "d", T0 + 2, u64::MAX, Some(d)), Admission::Granted(_)));
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
        Admission::Refused(r) => assert_eq!((r.code, r.retry_after_ms), (RefusalCode::CircuitOpen, 59_999)),
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
