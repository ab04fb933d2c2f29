//! The policy as a pure state machine. Every method takes `now` (ms since
//! the epoch); nothing here sleeps, blocks, logs or does I/O, so the
//! thread-safe wrapper can call it under its mutex and every rule can be
//! tested with hand-set times.
//!
//! Waiting is bookkeeping only: a caller that must wait gets a
//! [`WaiterId`] and joins its target's FIFO queue. When the target becomes
//! free, the head of the queue is *handed the turn* (`handoff`) and its id
//! is queued in `wakes` for the wrapper to signal after the lock is
//! released. While a turn is handed off, newcomers queue behind it, so the
//! order is strictly FIFO even though the woken thread needs a moment to
//! come back. A woken waiter re-runs the whole admission (circuit, backoff,
//! …); if it is refused or gives up, the turn passes to the next one.
//!
//! This file owns the [`Controller`], its admission/lease types and every
//! transition of its state (admit, queue, complete, touch, sweep). Other
//! `impl Controller` blocks live next to what they produce: persistence
//! (`persisted_json`, `restore`) in `state`, the HTTP view in `view`. The
//! per-platform and per-target records it keeps are declared in `records`,
//! and the stateless arithmetic of the rules is in `rules`.

use std::collections::BTreeMap;

use super::records::{InFlight, PlatformState, TargetState};
pub use super::records::{LeaseId, WaiterId};

use super::rules::{backoff_ms, diff, ms, prune, rate_limit_delay_ms, ready_at, sample_jitter_ms};
use super::{CircuitState, Outcome, Refusal, RefusalCode, Target};
use crate::config;

/// The failure code recorded when a half-open trial's lease is swept.
pub const SWEPT_TRIAL_ERROR: &str = "lease_idle_timeout";

/// A target quiet this long (30 days) with a closed circuit is forgotten
/// by the sweep (docs/POLICY.md, "Stale leases").
pub const FORGET_AFTER_MS: i64 = 30 * 86_400_000;

/// The answer to one admission attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Granted(Grant),
    Refused(Refusal),
    /// The target is busy: the caller is queued under this id and must call
    /// [`Controller::try_admit`] again (with the id) when it is woken, or
    /// [`Controller::cancel_waiter`] when it gives up.
    Wait(WaiterId),
}

/// A granted admission; the wrapper turns it into a `Lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub lease_id: LeaseId,
    /// When the decision was taken.
    pub admitted_at: i64,
    /// How long after `admitted_at` the platform's rate window allows the
    /// request (already charged to the window at `admitted_at + delay`).
    pub rate_limit_delay_ms: u64,
    pub jitter_ms: u64,
    /// Whether this lease is the half-open circuit's single trial.
    pub trial: bool,
}

impl Grant {
    /// The earliest moment the request should be sent.
    pub fn ready_at(&self) -> i64 {
        ready_at(self.admitted_at, self.rate_limit_delay_ms, self.jitter_ms)
    }
}

/// A lease released by the stale sweeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    pub target: Target,
    pub lease_id: LeaseId,
    pub request_id: String,
    pub idle_ms: u64,
    /// A swept half-open trial counts as a failure and reopens the circuit.
    pub trial: bool,
}

/// A log line the wrapper writes after releasing the lock.
pub(crate) type Note = (log::Level, String);

/// The policy's whole state. See the module docs.
pub struct Controller {
    pub(super) config: config::Policy,
    random: Box<dyn FnMut() -> f64 + Send>,
    pub(super) platforms: BTreeMap<String, PlatformState>,
    pub(super) targets: BTreeMap<Target, TargetState>,
    next_lease: LeaseId,
    next_waiter: WaiterId,
    wakes: Vec<WaiterId>,
    dirty: bool,
    notes: Vec<Note>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.config)
            .field("platforms", &self.platforms)
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A clean controller drawing jitter from `util::random_unit`.
    pub fn new(config: config::Policy) -> Controller {
        Controller::with_random(config, Box::new(crate::util::random_unit))
    }

    /// A clean controller with its own source of uniform [0, 1) numbers
    /// (tests use a fixed sequence).
    pub fn with_random(config: config::Policy, random: Box<dyn FnMut() -> f64 + Send>) -> Controller {
        Controller {
            config,
            random,
            platforms: BTreeMap::new(),
            targets: BTreeMap::new(),
            next_lease: 1,
            next_waiter: 1,
            wakes: Vec::new(),
            dirty: false,
            notes: Vec::new(),
        }
    }

    pub fn config(&self) -> &config::Policy {
        &self.config
    }

    /// One admission attempt, in the order of docs/POLICY.md: circuit, backoff,
    /// concurrency, rate limit, jitter. `waiter` is the id returned by an
    /// earlier `Wait` when a queued caller tries again after being woken.
    /// `max_delay_ms` bounds the rate delay plus the jitter (see
    /// `try_admit_with` for a bound on the delay alone).
    pub fn try_admit(
        &mut self,
        target: &Target,
        request_id: &str,
        now: i64,
        max_delay_ms: u64,
        waiter: Option<WaiterId>,
    ) -> Admission {
        self.try_admit_with(target, request_id, now, max_delay_ms, true, waiter)
    }

    /// `try_admit`, where `jitter_counts` says whether the jitter drawn
    /// counts against `max_delay_ms` or is taken whatever it is.
    pub fn try_admit_with(
        &mut self,
        target: &Target,
        request_id: &str,
        now: i64,
        max_delay_ms: u64,
        jitter_counts: bool,
        waiter: Option<WaiterId>,
    ) -> Admission {
        let ask = Ask { target, request_id, now, waiter };
        // 1. Circuit and 2. backoff.
        let trial = match self.check_circuit_and_backoff(target, now) {
            Ok(trial) => trial,
            Err(refusal) => {
                self.leave_queue(target, waiter);
                return Admission::Refused(refusal);
            }
        };
        // 3. Concurrency: one in flight per target, FIFO behind it.
        if let Some(id) = self.queue_if_busy(target, waiter) {
            return Admission::Wait(id);
        }
        // 4. Rate limit (not charged yet) and 5. jitter.
        let (delay, jitter) = self.delay_and_jitter(&target.platform, now);
        let counted = if jitter_counts { delay.saturating_add(jitter) } else { delay };
        if counted > max_delay_ms {
            return self.refuse_rate_limited(&ask, delay);
        }
        Admission::Granted(self.grant(&ask, trial, delay, jitter))
    }

    /// Steps 1 and 2 of an admission: the circuit, then the backoff.
    /// `Ok(trial)`: whether a grant now is the half-open circuit's trial.
    fn check_circuit_and_backoff(&mut self, target: &Target, now: i64) -> Result<bool, Refusal> {
        let base_ms = self.config.backoff.base_ms;
        let state = self.targets.entry(target.clone()).or_default();
        let trial = match state.circuit_state {
            CircuitState::Closed => false,
            CircuitState::Open => match state.circuit_retry_at {
                Some(at) if now < at => return Err(refuse(RefusalCode::CircuitOpen, diff(at, now))),
                _ => true,
            },
            // The trial's outcome decides; suggest the smallest wait the
            // policy ever imposes after a failure.
            CircuitState::HalfOpen if state.in_flight.as_ref().is_some_and(|held| held.trial) => {
                return Err(refuse(RefusalCode::CircuitOpen, base_ms.max(1)))
            }
            // Cannot normally happen (half_open always has its trial in
            // flight); recover by making this the trial.
            CircuitState::HalfOpen => true,
        };
        if let Some(until) = state.backoff_until.filter(|&until| now < until) {
            return Err(refuse(RefusalCode::BackoffActive, diff(until, now)));
        }
        Ok(trial)
    }

    /// Step 3: while the target has a request in flight (or has handed the
    /// turn to another waiter), the caller joins its FIFO queue and waits
    /// under the returned id.
    fn queue_if_busy(&mut self, target: &Target, waiter: Option<WaiterId>) -> Option<WaiterId> {
        let state = self.targets.get_mut(target)?;
        let busy = state.in_flight.is_some() || state.handoff.is_some_and(|h| Some(h) != waiter);
        if !busy {
            return None;
        }
        let id = waiter.unwrap_or_else(|| {
            let id = self.next_waiter;
            self.next_waiter += 1;
            id
        });
        if state.handoff != Some(id) && !state.queue.contains(&id) {
            state.queue.push_back(id);
        }
        Some(id)
    }

    /// Steps 4 and 5: the platform's rate-window delay (not charged yet)
    /// and the jitter drawn.
    fn delay_and_jitter(&mut self, platform: &str, now: i64) -> (u64, u64) {
        let window_ms = ms(self.config.rate_limit.window_ms);
        let limit = self.config.rate_limit.requests_per_minute_per_platform;
        let state = self.platforms.entry(platform.to_string()).or_default();
        prune(&mut state.dispatches, now, window_ms, limit);
        let delay = rate_limit_delay_ms(&state.dispatches, now, limit, window_ms as u64);
        let jitter = sample_jitter_ms(&self.config.jitter, &mut *self.random);
        (delay, jitter)
    }

    fn refuse_rate_limited(&mut self, ask: &Ask<'_>, delay: u64) -> Admission {
        if self.targets.get(ask.target).is_some_and(TargetState::is_pristine) {
            // Never admitted, nothing to remember: keep neither the view
            // nor the persisted document cluttered by refused strangers.
            self.targets.remove(ask.target);
        } else {
            self.leave_queue(ask.target, ask.waiter);
        }
        Admission::Refused(refuse(RefusalCode::RateLimited, delay))
    }

    /// Granted: charges the platform's window and takes the target.
    fn grant(&mut self, ask: &Ask<'_>, trial: bool, delay: u64, jitter: u64) -> Grant {
        let Ask { target, request_id, now, waiter } = *ask;
        let charged = now.saturating_add(ms(delay));
        let platform = self.platforms.entry(target.platform.clone()).or_default();
        let at = platform.dispatches.partition_point(|&t| t <= charged);
        platform.dispatches.insert(at, charged);
        platform.last_dispatched_at = Some(platform.last_dispatched_at.map_or(charged, |t| t.max(charged)));

        let lease_id = self.next_lease;
        self.next_lease += 1;
        let state = self.targets.entry(target.clone()).or_default();
        if let Some(id) = waiter {
            if state.handoff == Some(id) {
                state.handoff = None;
            }
            state.queue.retain(|&q| q != id);
        }
        if trial {
            state.circuit_state = CircuitState::HalfOpen;
            self.notes.push((
                log::Level::Info,
                format!("policy: circuit of {target} half-open, request {request_id} is the trial"),
            ));
        }
        let activity_at = ready_at(now, delay, jitter);
        let reason = "admitted".to_string();
        state.in_flight = Some(InFlight {
            lease_id,
            request_id: request_id.to_string(),
            trial,
            activity_at,
            activity_reason: reason,
        });
        state.record_activity(now, "admitted");
        self.dirty = true;
        Grant { lease_id, admitted_at: now, rate_limit_delay_ms: delay, jitter_ms: jitter, trial }
    }

    /// A queued caller gives up (its wait ran out). If it had been handed
    /// the turn, the turn passes to the next waiter.
    pub fn cancel_waiter(&mut self, target: &Target, waiter: WaiterId) {
        self.leave_queue(target, Some(waiter));
    }

    /// Completes a lease. Returns false, changing nothing, when the lease is
    /// not the one in flight on `target` (already completed, or swept).
    pub fn complete(&mut self, target: &Target, lease_id: LeaseId, outcome: &Outcome, now: i64) -> bool {
        let Some(state) = self.targets.get_mut(target) else {
            return false;
        };
        let Some(held) = state.in_flight.take_if(|held| held.lease_id == lease_id) else {
            return false;
        };
        let reason = match outcome {
            Outcome::Success => {
                if state.circuit_state != CircuitState::Closed {
                    self.notes.push((log::Level::Info, format!("policy: circuit of {target} closed")));
                }
                state.consecutive_failures = 0;
                state.circuit_state = CircuitState::Closed;
                state.circuit_retry_at = None;
                state.last_error = None;
                state.last_success_at = Some(now);
                "complete_success"
            }
            Outcome::Failure { code } => {
                record_failure(state, &self.config, target, code, now, held.trial, &mut self.notes);
                "complete_failure"
            }
            Outcome::Cancelled => {
                if held.trial && state.circuit_state == CircuitState::HalfOpen {
                    // Decision: a cancelled trial never reached the platform
                    // as far as we know; the circuit goes back to open with
                    // its (already due) retry time so the next caller
                    // becomes the trial at once. No counter changes.
                    state.circuit_state = CircuitState::Open;
                }
                "complete_cancelled"
            }
        };
        state.record_activity(now, reason);
        promote(state, &mut self.wakes);
        self.dirty = true;
        true
    }

    /// Refreshes an in-flight lease's idle clock (a long stream is alive).
    /// Returns false when the lease is no longer in flight.
    pub fn touch(&mut self, target: &Target, lease_id: LeaseId, reason: &str, now: i64) -> bool {
        match self
            .targets
            .get_mut(target)
            .and_then(|state| state.in_flight.as_mut())
            .filter(|held| held.lease_id == lease_id)
        {
            Some(held) => {
                held.activity_at = held.activity_at.max(now);
                held.activity_reason = reason.to_string();
                true
            }
            None => false,
        }
    }

    /// Releases every lease idle for at least `stale_lease.idle_ms`.
    pub fn sweep(&mut self, now: i64) -> Vec<Swept> {
        let idle_limit = ms(self.config.stale_lease.idle_ms);
        let mut swept = Vec::new();
        for (target, state) in self.targets.iter_mut() {
            let Some(held) =
                state.in_flight.take_if(|held| now.saturating_sub(held.activity_at) >= idle_limit)
            else {
                continue;
            };
            let idle_ms = diff(now, held.activity_at);
            state.stale_sweep_count = state.stale_sweep_count.saturating_add(1);
            state.last_stale_sweep_at = Some(now);
            state.last_stale_sweep_idle_ms = Some(idle_ms);
            state.last_stale_sweep_reason = Some(format!("{}:lease_idle_timeout", held.activity_reason));
            state.last_stale_sweep_request_id = Some(held.request_id.clone());
            if held.trial {
                record_failure(state, &self.config, target, SWEPT_TRIAL_ERROR, now, true, &mut self.notes);
            }
            state.record_activity(now, "stale_sweep");
            promote(state, &mut self.wakes);
            self.notes.push((
                log::Level::Warn,
                format!(
                    "policy: swept stale lease {} of {target} (request {}, idle {idle_ms} ms{})",
                    held.lease_id,
                    held.request_id,
                    if held.trial { ", half-open trial counted as a failure" } else { "" }
                ),
            ));
            swept.push(Swept {
                target: target.clone(),
                lease_id: held.lease_id,
                request_id: held.request_id,
                idle_ms,
                trial: held.trial,
            });
        }
        if !swept.is_empty() {
            self.dirty = true;
        }
        self.forget_quiet_targets(now);
        swept
    }

    /// Drops the targets quiet for `FORGET_AFTER_MS` (`is_forgettable`), so
    /// the persisted document and `/v1/browser` do not keep every client id
    /// a browser ever used. A forgotten target that comes back starts as a
    /// new one would: its circuit closed, no failures counted.
    fn forget_quiet_targets(&mut self, now: i64) {
        let before = self.targets.len();
        self.targets.retain(|_, state| !state.is_forgettable(now, FORGET_AFTER_MS));
        if self.targets.len() < before {
            self.dirty = true;
        }
    }

    /// Waiters handed the turn since the last call; the wrapper signals
    /// them after releasing the lock.
    pub fn take_wakes(&mut self) -> Vec<WaiterId> {
        std::mem::take(&mut self.wakes)
    }

    /// Whether persisted state changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::replace(&mut self.dirty, false)
    }

    pub(crate) fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// Removes a waiter from its target's queue (or takes back its turn)
    /// and hands the turn to the next one if the target is free.
    fn leave_queue(&mut self, target: &Target, waiter: Option<WaiterId>) {
        let (Some(id), Some(state)) = (waiter, self.targets.get_mut(target)) else {
            return;
        };
        if state.handoff == Some(id) {
            state.handoff = None;
        }
        state.queue.retain(|&q| q != id);
        promote(state, &mut self.wakes);
    }
}

/// If the target is free and someone waits, hands the turn to the oldest.
fn promote(state: &mut TargetState, wakes: &mut Vec<WaiterId>) {
    if state.in_flight.is_none() && state.handoff.is_none() {
        if let Some(next) = state.queue.pop_front() {
            state.handoff = Some(next);
            wakes.push(next);
        }
    }
}

fn record_failure(
    state: &mut TargetState,
    config: &config::Policy,
    target: &Target,
    code: &str,
    now: i64,
    trial: bool,
    notes: &mut Vec<Note>,
) {
    state.consecutive_failures = state.consecutive_failures.saturating_add(1);
    let failures = state.consecutive_failures;
    state.last_error = Some(code.to_string());
    state.last_failure_at = Some(now);
    let backoff = backoff_ms(config.backoff.base_ms, config.backoff.max_ms, failures);
    state.backoff_until = Some(now.saturating_add(ms(backoff)));
    if trial || failures >= config.circuit_breaker.failure_threshold {
        let retry_at = now.saturating_add(ms(config.circuit_breaker.open_ms));
        state.circuit_state = CircuitState::Open;
        state.circuit_retry_at = Some(retry_at);
        notes.push((
            log::Level::Warn,
            format!(
                "policy: circuit of {target} opened until {retry_at} after {failures} consecutive failure(s), last {code}"
            ),
        ));
    }
}

/// One admission attempt's caller.
#[derive(Clone, Copy)]
struct Ask<'a> {
    target: &'a Target,
    request_id: &'a str,
    now: i64,
    waiter: Option<WaiterId>,
}

fn refuse(code: RefusalCode, retry_after_ms: u64) -> Refusal {
    Refusal { code, retry_after_ms }
}
