//! The thread-safe policy the daemon shares ([`Policy`]) and the guard a
//! caller holds while its request is out ([`Lease`]).
//!
//! Locking rule: the controller's mutex is held only for the controller
//! call itself. Waking the next waiter (a `try_send` on its channel),
//! logging, serialising the persisted document and the `on_change`
//! callback all happen after it is released, and a queued caller waits on
//! its own channel without holding anything.

use crate::util::JoinOnDrop;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::controller::{Admission, Controller, Grant, LeaseId, Note, WaiterId};
use super::state::to_json;
use super::view::PolicyView;
use super::{AdmitOptions, Clock, Outcome, Refusal, RefusalCode, Target};
use crate::config;

/// The shared request policy. Create it with [`Policy::new`], restore the
/// persisted document, then hand out clones of the `Arc`.
pub struct Policy {
    config: config::Policy,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    on_change: Box<dyn Fn() + Send + Sync>,
}

struct Inner {
    controller: Controller,
    /// The wake-up channel of every queued caller, by waiter id.
    wakers: HashMap<WaiterId, Sender<()>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Policy {
    /// `on_change` is called, outside the lock, after every change of the
    /// persisted state (the daemon wires it to a debounced save).
    pub fn new(
        config: config::Policy,
        clock: Arc<dyn Clock>,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Policy> {
        Policy::with_controller(Controller::new(config), clock, on_change)
    }

    /// Like `new`, around a prepared controller (tests: fixed randomness).
    pub fn with_controller(
        controller: Controller,
        clock: Arc<dyn Clock>,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Policy> {
        Arc::new(Policy {
            config: controller.config().clone(),
            clock,
            inner: Mutex::new(Inner { controller, wakers: HashMap::new() }),
            on_change,
        })
    }

    /// The effective configuration (`defaults` of the view).
    pub fn config(&self) -> &config::Policy {
        &self.config
    }

    /// The policy's current time.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Asks for a lease on `target`. Refusals (circuit, backoff, rate limit
    /// over `opts.max_delay_ms`) come back at once; a busy target is waited
    /// for in FIFO order, for at most `min(opts.max_wait,
    /// waiter_timeout_ms)`, then refused `waiter_timeout`. Never sleeps
    /// through the rate-limit/jitter delay: see [`Lease::ready_at`].
    pub fn admit(
        self: &Arc<Self>,
        target: Target,
        request_id: &str,
        opts: AdmitOptions,
    ) -> Result<Lease, Refusal> {
        let budget = opts.max_wait.min(Duration::from_millis(self.config.waiter_timeout_ms));
        let deadline = Instant::now().checked_add(budget);
        let mut queued: Option<(WaiterId, Receiver<()>)> = None;
        let started = self.clock.now_ms();
        loop {
            let waiter = queued.as_ref().map(|(id, _)| *id);
            let (admission, receiver) = self.try_once(&target, request_id, started, &opts, waiter);
            let id = match admission {
                Admission::Granted(grant) => return Ok(Lease::new(self, target, request_id, grant)),
                Admission::Refused(refusal) => return Err(refusal),
                Admission::Wait(id) => id,
            };
            if let Some(rx) = receiver {
                queued = Some((id, rx));
            }
            let Some((_, rx)) = queued.as_ref() else {
                // Unreachable: a first Wait always creates the channel.
                return Err(self.give_up(&target, id));
            };
            let remaining = deadline.map_or(budget, |d| d.saturating_duration_since(Instant::now()));
            if remaining.is_zero() || rx.recv_timeout(remaining).is_err() {
                return Err(self.give_up(&target, id));
            }
        }
    }

    /// One admission attempt under the lock, for a caller that asked at
    /// `started`. A caller told to wait for the first time gets the
    /// receiver it will be woken on; a queued caller that is granted or
    /// refused gives up its waker.
    fn try_once(
        &self,
        target: &Target,
        request_id: &str,
        started: i64,
        opts: &AdmitOptions,
        waiter: Option<WaiterId>,
    ) -> (Admission, Option<Receiver<()>>) {
        self.locked(|inner, now| {
            // With `one_deadline`, the allowance for a rate delay shrinks by
            // the time already spent queued: a request admitted after its
            // caller's deadline is refused (`rate_limited`), not sent late.
            let waited = u64::try_from(now.saturating_sub(started)).unwrap_or(0);
            let max_delay_ms =
                if opts.one_deadline { opts.max_delay_ms.saturating_sub(waited) } else { opts.max_delay_ms };
            let admission = inner.controller.try_admit_with(
                target,
                request_id,
                now,
                max_delay_ms,
                opts.one_deadline,
                waiter,
            );
            let mut receiver = None;
            match (&admission, waiter) {
                (Admission::Wait(id), None) => {
                    let (tx, rx) = bounded(1);
                    inner.wakers.insert(*id, tx);
                    receiver = Some(rx);
                }
                (Admission::Granted(_) | Admission::Refused(_), Some(id)) => {
                    inner.wakers.remove(&id);
                }
                _ => {}
            }
            (admission, receiver)
        })
    }

    /// Releases every lease idle for `stale_lease.idle_ms`; returns how
    /// many. The `policy-sweeper` thread (`spawn_sweeper`) calls it on its
    /// timer.
    pub fn sweep(&self) -> usize {
        self.locked(|inner, now| inner.controller.sweep(now)).len()
    }

    /// Starts the `policy-sweeper` thread: a sweep every
    /// `stale_lease.sweep_interval_ms` until its handle is shut down.
    pub fn spawn_sweeper(self: &Arc<Self>) -> io::Result<SweeperHandle> {
        let every = Duration::from_millis(self.config.stale_lease.sweep_interval_ms.max(1));
        let sweeper = Sweeper { policy: Arc::clone(self), every };
        let (tx, rx) = bounded(1);
        let join = JoinOnDrop::spawn("policy-sweeper", move || sweeper.run(rx))?;
        Ok(SweeperHandle { tx, _join: join })
    }

    /// The persisted state document (`{"version":1,"platforms":…,"targets":…}`).
    pub fn persisted_json(&self) -> String {
        let doc = self.locked(|inner, now| inner.controller.snapshot(now));
        to_json(&doc)
    }

    /// Loads the persisted document at start. A broken document or an
    /// unknown version is logged and ignored: the policy starts clean.
    pub fn restore(&self, json: &str) {
        match self.locked(|inner, now| inner.controller.restore(json, now)) {
            Ok(0) => log::info!("policy: state restored"),
            Ok(skipped) => {
                log::warn!("policy: state restored, {skipped} malformed entries skipped")
            }
            Err(reason) => log::warn!("policy: {reason}; starting with a clean policy state"),
        }
    }

    /// The `policy` part of `GET /v1/browser`, optionally for one platform.
    pub fn view(&self, platform: Option<&str>) -> PolicyView {
        self.locked(|inner, now| inner.controller.view(platform, now))
    }

    fn give_up(&self, target: &Target, waiter: WaiterId) -> Refusal {
        self.locked(|inner, _| {
            inner.controller.cancel_waiter(target, waiter);
            inner.wakers.remove(&waiter);
        });
        Refusal { code: RefusalCode::WaiterTimeout, retry_after_ms: 0 }
    }

    fn complete(&self, target: &Target, lease_id: LeaseId, outcome: &Outcome) -> bool {
        self.locked(|inner, now| inner.controller.complete(target, lease_id, outcome, now))
    }

    fn touch(&self, target: &Target, lease_id: LeaseId, reason: &str) -> bool {
        self.locked(|inner, now| inner.controller.touch(target, lease_id, reason, now))
    }

    /// Runs `f` under the lock with the time read under it, then — after
    /// releasing it — wakes the waiters handed the turn, writes the log
    /// lines and calls `on_change` if persisted state changed. The time is
    /// read under the lock so that the controller sees it in lock order: a
    /// time read before waiting for the lock can be older than one another
    /// caller already used, and the rate window, pruned with the later
    /// time, would no longer hold a dispatch the older time still counts:
    /// an admission at the older time would be charged inside the window.
    fn locked<R>(&self, f: impl FnOnce(&mut Inner, i64) -> R) -> R {
        let (result, wake, notes, dirty) = {
            let mut inner = self.inner.lock();
            let now = self.clock.now_ms();
            let result = f(&mut inner, now);
            let ids = inner.controller.take_wakes();
            let wake: Vec<Sender<()>> = ids.iter().filter_map(|id| inner.wakers.get(id).cloned()).collect();
            let notes: Vec<Note> = inner.controller.take_notes();
            let dirty = inner.controller.take_dirty();
            (result, wake, notes, dirty)
        };
        for sender in wake {
            // Capacity 1 and one wake per turn: never blocks; a waiter that
            // already gave up simply never reads it.
            let _ = sender.try_send(());
        }
        for (level, line) in notes {
            log::log!(level, "{line}");
        }
        if dirty {
            (self.on_change)();
        }
        result
    }
}

/// The `policy-sweeper` thread's inbox.
pub enum SweeperMsg {
    Stop,
}

/// The `policy-sweeper` thread: its inbox and join handle. Dropping it is
/// [`SweeperHandle::shutdown`].
pub struct SweeperHandle {
    tx: Sender<SweeperMsg>,
    /// Joined on drop, after the fields above.
    _join: JoinOnDrop<()>,
}

impl SweeperHandle {
    #[cfg(test)]
    pub fn thread_name(&self) -> Option<&str> {
        self._join.thread().and_then(|t| t.name())
    }

    /// Stops the sweeper (after a sweep in progress) and joins it.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for SweeperHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(SweeperMsg::Stop);
    }
}

/// Releases stale leases on its own timer (docs/POLICY.md "Stale leases").
struct Sweeper {
    policy: Arc<Policy>,
    every: Duration,
}

impl Sweeper {
    fn run(self, rx: Receiver<SweeperMsg>) {
        let mut next = Instant::now() + self.every;
        // Ends on `Stop`, or when the handle is gone.
        while let Err(RecvTimeoutError::Timeout) = rx.recv_deadline(next) {
            self.policy.sweep();
            next += self.every;
            let now = Instant::now();
            if next < now {
                next = now + self.every;
            }
        }
    }
}

/// The right to send one request to a target. Complete it exactly once
/// with [`Lease::complete`]; dropping it completes it as `Cancelled`.
pub struct Lease {
    pub lease_id: LeaseId,
    pub request_id: String,
    pub target: Target,
    /// When the admission was decided.
    pub admitted_at: i64,
    /// Rate-limit delay after `admitted_at` (already charged to the window).
    pub rate_limit_delay_ms: u64,
    /// Random extra delay on top of the rate-limit delay.
    pub jitter_ms: u64,
    trial: bool,
    policy: Arc<Policy>,
    completed: bool,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("lease_id", &self.lease_id)
            .field("request_id", &self.request_id)
            .field("target", &self.target)
            .field("admitted_at", &self.admitted_at)
            .field("rate_limit_delay_ms", &self.rate_limit_delay_ms)
            .field("jitter_ms", &self.jitter_ms)
            .field("trial", &self.trial)
            .finish()
    }
}

impl Lease {
    fn new(policy: &Arc<Policy>, target: Target, request_id: &str, grant: Grant) -> Lease {
        Lease {
            lease_id: grant.lease_id,
            request_id: request_id.to_string(),
            target,
            admitted_at: grant.admitted_at,
            rate_limit_delay_ms: grant.rate_limit_delay_ms,
            jitter_ms: grant.jitter_ms,
            trial: grant.trial,
            policy: Arc::clone(policy),
            completed: false,
        }
    }

    /// `admitted_at + rate_limit_delay_ms + jitter_ms`: the earliest moment
    /// the request should go out.
    pub fn ready_at(&self) -> i64 {
        Grant {
            lease_id: self.lease_id,
            admitted_at: self.admitted_at,
            rate_limit_delay_ms: self.rate_limit_delay_ms,
            jitter_ms: self.jitter_ms,
            trial: self.trial,
        }
        .ready_at()
    }

    /// Milliseconds from the policy's now until `ready_at` (0 if past).
    pub fn remaining_delay_ms(&self) -> u64 {
        u64::try_from(self.ready_at().saturating_sub(self.policy.now_ms())).unwrap_or(0)
    }

    /// When the delay is over, on the monotonic clock: what a caller waits
    /// for (in naps, `util::nap_until`, so that a stop cuts it short).
    pub fn ready_instant(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.remaining_delay_ms())
    }

    /// Whether this lease is the half-open circuit's single trial.
    pub fn is_trial(&self) -> bool {
        self.trial
    }

    /// Marks the lease as alive (e.g. a stream event arrived) so the stale
    /// sweeper measures idleness from now; `reason` becomes the prefix of
    /// `last_stale_sweep_reason` should it be swept later. Returns false if
    /// the lease was already swept.
    pub fn touch(&self, reason: &str) -> bool {
        self.policy.touch(&self.target, self.lease_id, reason)
    }

    /// Completes the lease. Returns false when it had already been released
    /// by the stale sweeper, in which case the outcome is ignored.
    pub fn complete(mut self, outcome: Outcome) -> bool {
        self.completed = true;
        self.policy.complete(&self.target, self.lease_id, &outcome)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.completed {
            self.completed = true;
            self.policy.complete(&self.target, self.lease_id, &Outcome::Cancelled);
        }
    }
}
