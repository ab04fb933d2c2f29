//! The controller's records: what it keeps per platform (the charged
//! dispatch times of the rate window) and per target (the persisted
//! circuit, backoff and activity fields, plus the process-local lease in
//! flight and FIFO queue). Plain data with a few small helpers; every
//! transition of these records is in `controller`, the mapping to the
//! persisted document in `state` and to the HTTP view in `view`.

use std::collections::VecDeque;

use super::CircuitState;

/// Identifies a lease within one process (never persisted).
pub type LeaseId = u64;
/// Identifies a queued caller within one process.
pub type WaiterId = u64;

#[derive(Debug, Default)]
pub(super) struct PlatformState {
    /// Charged dispatch times, sorted; only those after `now - window_ms`
    /// are kept (pruned on every admission and snapshot).
    pub(super) dispatches: Vec<i64>,
    pub(super) last_dispatched_at: Option<i64>,
}

#[derive(Debug, Default)]
pub(super) struct TargetState {
    // Persisted.
    pub(super) circuit_state: CircuitState,
    pub(super) circuit_retry_at: Option<i64>,
    pub(super) backoff_until: Option<i64>,
    pub(super) consecutive_failures: u32,
    pub(super) last_activity_at: Option<i64>,
    pub(super) last_activity_reason: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) last_failure_at: Option<i64>,
    pub(super) last_success_at: Option<i64>,
    pub(super) stale_sweep_count: u64,
    pub(super) last_stale_sweep_at: Option<i64>,
    pub(super) last_stale_sweep_idle_ms: Option<u64>,
    pub(super) last_stale_sweep_reason: Option<String>,
    pub(super) last_stale_sweep_request_id: Option<String>,
    // Process-local.
    pub(super) in_flight: Option<InFlight>,
    /// Waiters not yet handed the turn, oldest first.
    pub(super) queue: VecDeque<WaiterId>,
    /// The waiter that has been woken and may take the target next.
    pub(super) handoff: Option<WaiterId>,
}

impl TargetState {
    /// Nothing recorded, nothing in flight, nobody waiting.
    pub(super) fn is_pristine(&self) -> bool {
        self.in_flight.is_none()
            && self.queue.is_empty()
            && self.handoff.is_none()
            && self.last_activity_at.is_none()
            && self.circuit_state == CircuitState::Closed
            && self.backoff_until.is_none()
            && self.consecutive_failures == 0
            && self.stale_sweep_count == 0
    }

    /// Nothing in flight or waiting, the circuit closed, no backoff still
    /// to come, and no activity for `quiet_ms`: what it records no longer
    /// changes a decision, so the target can be forgotten.
    pub(super) fn is_forgettable(&self, now: i64, quiet_ms: i64) -> bool {
        self.in_flight.is_none()
            && self.queue.is_empty()
            && self.handoff.is_none()
            && self.circuit_state == CircuitState::Closed
            && self.backoff_until.is_none_or(|until| until <= now)
            && self.last_activity_at.is_none_or(|at| now.saturating_sub(at) >= quiet_ms)
    }

    pub(super) fn waiting(&self) -> usize {
        self.queue.len() + usize::from(self.handoff.is_some())
    }

    pub(super) fn record_activity(&mut self, now: i64, reason: &str) {
        self.last_activity_at = Some(now);
        self.last_activity_reason = Some(reason.to_string());
    }
}

#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) lease_id: LeaseId,
    pub(super) request_id: String,
    pub(super) trial: bool,
    /// Idle time is counted from here: the lease's ready time, or its last
    /// `touch`, whichever is later.
    pub(super) activity_at: i64,
    pub(super) activity_reason: String,
}
