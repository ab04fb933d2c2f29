//! Tests of `Policy`, the thread-safe wrapper: restarts, lease drop, the
//! on_change callback, the real blocking FIFO wait and the sweeper thread.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

#[test]
fn seed_scenario_open_circuit_survives_a_restart() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 1;
    c.circuit_breaker.open_ms = 60_000;
    let first = manual_policy(c.clone(), &clock);
    let t = target("firefox-claude", "claude");
    let lease = first.admit(t.clone(), "request-persisted-circuit", AdmitOptions::default()).unwrap();
    assert!(lease.complete(Outcome::failure("upstream_429")));
    let refused = first.admit(t.clone(), "again", AdmitOptions::default()).unwrap_err();
    assert_eq!(refused, Refusal { code: RefusalCode::CircuitOpen, retry_after_ms: 60_000 });
    let json = first.persisted_json();

    let restarted = manual_policy(c, &clock);
    restarted.restore(&json);
    let view = restarted.view(Some("claude"));
    assert_eq!(view.platforms[0].recent_dispatch_count, 1);
    let refused = restarted.admit(t.clone(), "request-after-restart", AdmitOptions::default()).unwrap_err();
    assert_eq!(refused.code.as_str(), "circuit_open");
    assert_eq!(refused.retry_after_ms, 60_000);
    clock.advance(59_000);
    assert_eq!(restarted.admit(t, "r", AdmitOptions::default()).unwrap_err().retry_after_ms, 1_000);
}

#[test]
fn seed_scenario_rate_window_survives_a_restart() {
    let clock = Arc::new(ManualClock::new(T0));
    let c = rate_cfg(1, 60_000);
    let first = manual_policy(c.clone(), &clock);
    let t = target("firefox-chatgpt", "chatgpt");
    let lease = first.admit(t.clone(), "request-persisted-rate-limit", AdmitOptions::default()).unwrap();
    assert_eq!(lease.rate_limit_delay_ms, 0);
    lease.complete(Outcome::Success);
    let json = first.persisted_json();

    let restarted = manual_policy(c.clone(), &clock);
    restarted.restore(&json);
    assert_eq!(restarted.view(Some("chatgpt")).platforms[0].recent_dispatch_count, 1);
    let delayed = restarted.admit(t.clone(), "request-after-restart", AdmitOptions::default()).unwrap();
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
        let lease = policy.admit(t.clone(), "dropped", AdmitOptions::default()).unwrap();
        assert_eq!(policy.view(None).targets[0].in_flight, 1);
        let _ = &lease;
    }
    let v = &policy.view(None).targets[0];
    assert_eq!(v.in_flight, 0);
    assert_eq!(v.last_activity_reason.as_deref(), Some("complete_cancelled"));

    let lease = policy.admit(t.clone(), "swept", AdmitOptions::default()).unwrap();
    assert!(lease.touch("stream_event"));
    clock.advance(1_000);
    assert_eq!(policy.sweep(), 1);
    assert!(!lease.touch("late"));
    assert!(!lease.complete(Outcome::failure("late")));
    let v = &policy.view(None).targets[0];
    assert_eq!(v.consecutive_failures, 0);
    assert_eq!(v.stale_sweep_count, 1);
    assert_eq!(v.last_stale_sweep_reason.as_deref(), Some("stream_event:lease_idle_timeout"));
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
    let lease = policy.admit(t.clone(), "a", AdmitOptions::default()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    lease.complete(Outcome::Success);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A refusal changes nothing persisted.
    let opts = AdmitOptions { max_delay_ms: 0, ..AdmitOptions::default() };
    assert_eq!(policy.admit(t, "b", opts).unwrap_err().code, RefusalCode::RateLimited);
    let _ = policy.view(None);
    assert_eq!(policy.sweep(), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Waits (really) until `cond` holds, up to 5 s.
fn eventually(cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(5), "condition never held");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn five_blocked_waiters_are_served_in_fifo_order() {
    let clock = Arc::new(ManualClock::new(T0));
    let policy = manual_policy(cfg(), &clock);
    let t = claude();
    let holder = policy.admit(t.clone(), "holder", AdmitOptions::default()).unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..5 {
        let (shared, t, order) = (policy.clone(), t.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let opts = AdmitOptions {
                max_wait: Duration::from_secs(30),
                max_delay_ms: u64::MAX,
                ..AdmitOptions::default()
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
    let holder = policy.admit(t.clone(), "holder", AdmitOptions::default()).unwrap();
    let timeout = Refusal { code: RefusalCode::WaiterTimeout, retry_after_ms: 0 };

    // max_wait bounds the wait…
    let start = Instant::now();
    let opts = AdmitOptions {
        max_wait: Duration::from_millis(20),
        max_delay_ms: u64::MAX,
        ..AdmitOptions::default()
    };
    assert_eq!(policy.admit(t.clone(), "w", opts).unwrap_err(), timeout);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(20) && waited < Duration::from_secs(20), "{waited:?}");
    // …and so does waiter_timeout_ms.
    let start = Instant::now();
    let opts =
        AdmitOptions { max_wait: Duration::from_secs(60), max_delay_ms: u64::MAX, ..AdmitOptions::default() };
    assert_eq!(policy.admit(t.clone(), "w", opts).unwrap_err(), timeout);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(40) && waited < Duration::from_secs(20), "{waited:?}");
    // max_wait zero: a busy target is refused at once.
    let opts = AdmitOptions { max_wait: Duration::ZERO, max_delay_ms: u64::MAX, ..AdmitOptions::default() };
    assert_eq!(policy.admit(t.clone(), "w", opts).unwrap_err(), timeout);
    assert_eq!(policy.view(None).targets[0].waiting, 0);

    // The holder completing later still works, and nobody is left queued.
    holder.complete(Outcome::Success);
    policy.admit(t, "after", AdmitOptions::default()).unwrap().complete(Outcome::Success);
}

/// With `one_deadline` (relays, actions), a waiter's allowance for a rate
/// delay counts from when it asked: after 2 s in the queue, a 5 s allowance
/// leaves 3 s, and a 4 s delay is refused (`rate_limited`) instead of
/// sending the request after its deadline. Without it (the dispatcher),
/// the limit is on the delay alone and the same delay is granted.
#[test]
fn time_spent_queued_comes_off_the_rate_delay_allowance() {
    assert_eq!(
        queued_then_delayed(true).unwrap_err(),
        Refusal { code: RefusalCode::RateLimited, retry_after_ms: 4_000 }
    );
    assert!(queued_then_delayed(false).is_ok());
}

/// Queued 2 s behind a holder, then a 4 s rate delay, with a 5 s allowance.
fn queued_then_delayed(one_deadline: bool) -> Result<u64, Refusal> {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = rate_cfg(2, 6_000);
    c.jitter = jitter(0, 0, 0, 0);
    let policy = manual_policy(c, &clock);
    let t = claude();
    policy.admit(t.clone(), "a", AdmitOptions::default()).unwrap().complete(Outcome::Success);
    let holder = policy.admit(t.clone(), "holder", AdmitOptions::default()).unwrap();
    let waiter = {
        let (policy, t) = (policy.clone(), t.clone());
        std::thread::spawn(move || {
            let opts = AdmitOptions { max_wait: Duration::from_secs(30), max_delay_ms: 5_000, one_deadline };
            policy.admit(t, "w", opts).map(|lease| lease.rate_limit_delay_ms)
        })
    };
    eventually(|| policy.view(None).targets[0].waiting == 1);
    clock.advance(2_000);
    holder.complete(Outcome::Success);
    waiter.join().unwrap()
}

/// The dispatcher's limit (1 s) is on the rate delay alone: a jitter longer
/// than that is taken, not refused. Counted against the limit it refused
/// every delivery with `retry_after_ms` 0, so the job was put back due at
/// once and refused again on every tick, never delivered. A caller with one
/// deadline (a relay) still counts the jitter.
#[test]
fn a_jitter_over_the_limit_is_taken_unless_the_caller_has_one_deadline() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.jitter = jitter(1_500, 2_000, 1_500, 0);
    let policy = manual_policy(c, &clock);
    let dispatcher =
        AdmitOptions { max_wait: Duration::from_secs(1), max_delay_ms: 1_000, one_deadline: false };
    let lease = policy.admit(claude(), "job", dispatcher).expect("admitted");
    assert_eq!((lease.rate_limit_delay_ms, lease.jitter_ms), (0, 1_500));
    lease.complete(Outcome::Success);
    let relay = AdmitOptions { one_deadline: true, ..dispatcher };
    let refused = policy.admit(claude(), "relay", relay).unwrap_err();
    assert_eq!(refused, Refusal { code: RefusalCode::RateLimited, retry_after_ms: 0 });
}

#[test]
fn a_blocked_waiter_is_refused_when_the_holder_opens_the_circuit() {
    let clock = Arc::new(ManualClock::new(T0));
    let mut c = cfg();
    c.circuit_breaker.failure_threshold = 1;
    let policy = manual_policy(c, &clock);
    let t = claude();
    let holder = policy.admit(t.clone(), "holder", AdmitOptions::default()).unwrap();
    let waiter = {
        let (policy, t) = (policy.clone(), t.clone());
        std::thread::spawn(move || {
            let opts = AdmitOptions {
                max_wait: Duration::from_secs(30),
                max_delay_ms: u64::MAX,
                ..AdmitOptions::default()
            };
            policy.admit(t, "w", opts).map(|lease| lease.lease_id)
        })
    };
    eventually(|| policy.view(None).targets[0].waiting == 1);
    clock.advance(10);
    holder.complete(Outcome::failure("upstream_500"));
    let refused = waiter.join().unwrap().unwrap_err();
    assert_eq!((refused.code, refused.retry_after_ms), (RefusalCode::CircuitOpen, 60_000));
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
                    charged.lock().push(lease.admitted_at + lease.rate_limit_delay_ms as i64);
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
    let lease = policy.admit(claude(), "stuck", AdmitOptions::default()).unwrap();
    let handle = policy.spawn_sweeper().unwrap();
    assert_eq!(handle.thread_name(), Some("policy-sweeper"));
    clock.advance(1_000);
    eventually(|| policy.view(None).targets[0].in_flight == 0);
    assert_eq!(policy.view(None).targets[0].stale_sweep_count, 1);
    handle.shutdown();
    assert!(!lease.complete(Outcome::Success));
}

#[test]
fn restore_of_a_broken_document_starts_clean() {
    let clock = Arc::new(ManualClock::new(T0));
    let policy = manual_policy(cfg(), &clock);
    policy.restore("{\"version\":99}");
    policy.restore("garbage");
    assert!(policy.view(None).targets.is_empty());
    assert_eq!(policy.persisted_json(), r#"{"version":1,"platforms":[],"targets":[]}"#);
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
        let lease = policy.admit(target(&format!("c{i}"), "claude"), "r", AdmitOptions::default()).unwrap();
        assert!((100..=900).contains(&lease.jitter_ms));
        assert_eq!(
            lease.ready_at(),
            lease.admitted_at + lease.rate_limit_delay_ms as i64 + lease.jitter_ms as i64
        );
        lease.complete(Outcome::Success);
    }
}

/// A clock whose `stall_at`-th read from now returns the time it loaded
/// only after `release` (or 2 s): the caller holds a time that the clock
/// has meanwhile moved past.
struct StallingClock {
    inner: ManualClock,
    stall_at: AtomicUsize,
    stalled: std::sync::atomic::AtomicBool,
    release: (crossbeam_channel::Sender<()>, crossbeam_channel::Receiver<()>),
}

impl Clock for StallingClock {
    fn now_ms(&self) -> i64 {
        let now = self.inner.now_ms();
        if self.stall_at.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) == Ok(1) {
            self.stalled.store(true, Ordering::SeqCst);
            let _ = self.release.1.recv_timeout(Duration::from_secs(2));
        }
        now
    }
}

/// An admission whose time was read before another caller (here the
/// persistence snapshot) pruned the window with a later time must still
/// count the dispatch that time holds in the window: the time is read
/// under the lock, so the admission and the prune see it in lock order.
#[test]
fn an_admission_is_never_charged_inside_the_window_by_a_later_prune() {
    let clock = Arc::new(StallingClock {
        inner: ManualClock::new(T0),
        stall_at: 0.into(),
        stalled: false.into(),
        release: crossbeam_channel::bounded(1),
    });
    let policy = Policy::new(rate_cfg(1, 1000), clock.clone(), noop());
    let t = target("firefox-1", "chatgpt");
    policy.admit(t.clone(), "first", AdmitOptions::default()).unwrap().complete(Outcome::Success);
    clock.inner.set(T0 + 999);
    // `admit` reads the clock when asked, then for its attempt: the second
    // read is the admission's time.
    clock.stall_at.store(2, Ordering::SeqCst);
    let admitting = {
        let (policy, t) = (policy.clone(), t.clone());
        std::thread::spawn(move || policy.admit(t, "second", AdmitOptions::default()).unwrap())
    };
    assert!(wait_for(|| clock.stalled.load(Ordering::SeqCst)));
    // The snapshot prunes with T0 + 1000, where the first dispatch has
    // left the window; it runs while the admission holds T0 + 999, unless
    // that admission holds the lock (then it runs after it).
    clock.inner.set(T0 + 1000);
    let snapshot = {
        let policy = policy.clone();
        std::thread::spawn(move || policy.persisted_json())
    };
    let _ = wait_for_at_most(Duration::from_millis(500), || snapshot.is_finished());
    clock.release.0.send(()).unwrap();
    let second = admitting.join().unwrap();
    snapshot.join().unwrap();
    let charged = second.admitted_at + second.rate_limit_delay_ms as i64;
    assert!(charged >= T0 + 1000, "charged at T0 + {}, inside the first dispatch's window", charged - T0);
    second.complete(Outcome::Success);
}

fn wait_for(cond: impl FnMut() -> bool) -> bool {
    wait_for_at_most(Duration::from_secs(10), cond)
}

fn wait_for_at_most(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}
