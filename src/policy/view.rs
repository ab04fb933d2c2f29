//! The `policy` part of `GET /v1/browser` (HTTP_API.md "Policy view"):
//! plain serialisable structs whose field names are the API's keys.

use serde::Serialize;

use super::CircuitState;
use crate::config;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyView {
    /// The effective `policy` configuration.
    pub defaults: config::Policy,
    pub platforms: Vec<PlatformView>,
    pub targets: Vec<TargetView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformView {
    pub platform: String,
    /// Dispatch times still counted against the rate window: those after
    /// `now - window_ms`, including admissions charged for a moment later
    /// than now (a delayed lease).
    pub recent_dispatch_count: usize,
    /// The latest charged dispatch time (admission time + rate delay).
    pub last_dispatched_at: Option<i64>,
    /// Callers currently waiting for one of this platform's targets.
    pub waiting: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetView {
    pub client_id: String,
    pub platform: String,
    pub circuit_state: CircuitState,
    pub consecutive_failures: u32,
    pub backoff_until: Option<i64>,
    pub circuit_retry_at: Option<i64>,
    /// 0 or 1: whether a lease is currently held (process-local).
    pub in_flight: usize,
    /// Callers waiting for this target (process-local).
    pub waiting: usize,
    pub last_activity_at: Option<i64>,
    pub last_activity_reason: Option<String>,
    pub last_error: Option<String>,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub stale_sweep_count: u64,
    pub last_stale_sweep_at: Option<i64>,
    pub last_stale_sweep_idle_ms: Option<u64>,
    pub last_stale_sweep_reason: Option<String>,
    pub last_stale_sweep_request_id: Option<String>,
}
