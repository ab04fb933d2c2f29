//! Tests of the circuit breaker: opening at the threshold, refusals while
//! open, the half-open trial and how its outcome closes or reopens it.

use super::*;

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
    for (now, expected) in [(opened, 60_000), (opened + 10_000, 50_000), (opened + 59_999, 1)] {
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
    assert_eq!(r, Refusal { code: RefusalCode::CircuitOpen, retry_after_ms: 1_000 });
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
    assert_eq!((r.code, r.retry_after_ms), (RefusalCode::CircuitOpen, 60_000));
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
    assert_eq!((v.circuit_state, v.consecutive_failures), (CircuitState::Open, 2));
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
    assert_eq!(tv(&ctl, &t, now + idle + 1).circuit_state, CircuitState::Open);
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
    assert_eq!(v.circuit_retry_at, Some(now), "retry time kept (already due)");
    assert_eq!(v.last_activity_reason.as_deref(), Some("complete_cancelled"));
    let next = grant(&mut ctl, &t, now + 50);
    assert!(next.trial);
    assert_eq!(tv(&ctl, &t, now + 50).circuit_state, CircuitState::HalfOpen);
}

/// Only a cancelled *trial* of a *half-open* circuit reopens it: a trial
/// whose circuit was set closed meanwhile (here by a restore) leaves it
/// closed, and a cancelled ordinary lease changes no circuit.
#[test]
fn cancelling_reopens_only_a_half_open_circuits_trial() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let now = opened + 60_000;
    let trial = grant(&mut ctl, &t, now);
    assert!(trial.trial);
    let closed =
        ctl.persisted_json(now).replace("\"open\"", "\"closed\"").replace("\"half_open\"", "\"closed\"");
    ctl.restore(&closed, now).unwrap();
    assert_eq!(tv(&ctl, &t, now).circuit_state, CircuitState::Closed);
    assert!(ctl.complete(&t, trial.lease_id, &Outcome::Cancelled, now + 1));
    assert_eq!(tv(&ctl, &t, now + 1).circuit_state, CircuitState::Closed, "not half-open: left as it is");

    let other = target("firefox-2", "claude");
    let lease = grant(&mut ctl, &other, now + 2);
    assert!(!lease.trial);
    assert!(ctl.complete(&other, lease.lease_id, &Outcome::Cancelled, now + 3));
    assert_eq!(tv(&ctl, &other, now + 3).circuit_state, CircuitState::Closed);
}

/// What the wrapper logs after releasing the lock: the circuit opening,
/// its trial, and its closing, each once.
#[test]
fn circuit_changes_leave_one_note_each() {
    let mut ctl = Controller::new(circuit_cfg());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let notes = ctl.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0].0, log::Level::Warn);
    assert!(notes[0].1.contains("circuit of") && notes[0].1.contains("opened"), "{notes:?}");
    assert!(ctl.take_notes().is_empty(), "notes are taken once");

    let g = grant(&mut ctl, &t, opened + 60_000);
    let notes = ctl.take_notes();
    assert!(notes.len() == 1 && notes[0].1.contains("half-open"), "{notes:?}");
    assert!(ctl.complete(&t, g.lease_id, &Outcome::Success, opened + 60_001));
    let notes = ctl.take_notes();
    assert!(notes.len() == 1 && notes[0].1.contains("closed"), "{notes:?}");
}
