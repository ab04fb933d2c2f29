//! The `policy` part of `GET /v1/browser` (docs/POLICY.md "Reading `policy` in `GET /v1/browser`"):
//! plain serialisable structs whose field names are the API's keys.
//!
//! This file also owns `Controller::view`, the read-only projection of the
//! controller's state onto those structs, so the API's shape and the code
//! that fills it change together.

use std::collections::BTreeSet;

use serde::Serialize;

use super::controller::Controller;
use super::rules::ms;
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

impl Controller {
    /// The `policy` view of `GET /v1/browser`, optionally for one platform.
    pub fn view(&self, platform: Option<&str>, now: i64) -> PolicyView {
        let keep = |name: &str| platform.is_none_or(|wanted| wanted == name);
        let window_start = now.saturating_sub(ms(self.config.rate_limit.window_ms));
        let names: BTreeSet<&str> = self
            .platforms
            .keys()
            .map(String::as_str)
            .chain(self.targets.keys().map(|t| t.platform.as_str()))
            .filter(|name| keep(name))
            .collect();
        let platforms = names
            .into_iter()
            .map(|name| {
                let state = self.platforms.get(name);
                PlatformView {
                    platform: name.to_string(),
                    recent_dispatch_count: state
                        .map_or(0, |p| p.dispatches.iter().filter(|&&t| t > window_start).count()),
                    last_dispatched_at: state.and_then(|p| p.last_dispatched_at),
                    waiting: self
                        .targets
                        .iter()
                        .filter(|(t, _)| t.platform == name)
                        .map(|(_, s)| s.waiting())
                        .sum(),
                }
            })
            .collect();
        let targets = self
            .targets
            .iter()
            .filter(|(t, _)| keep(&t.platform))
            .map(|(t, s)| TargetView {
                client_id: t.client_id.clone(),
                platform: t.platform.clone(),
                circuit_state: s.circuit_state,
                consecutive_failures: s.consecutive_failures,
                backoff_until: s.backoff_until,
                circuit_retry_at: s.circuit_retry_at,
                in_flight: usize::from(s.in_flight.is_some()),
                waiting: s.waiting(),
                last_activity_at: s.last_activity_at,
                last_activity_reason: s.last_activity_reason.clone(),
                last_error: s.last_error.clone(),
                last_success_at: s.last_success_at,
                last_failure_at: s.last_failure_at,
                stale_sweep_count: s.stale_sweep_count,
                last_stale_sweep_at: s.last_stale_sweep_at,
                last_stale_sweep_idle_ms: s.last_stale_sweep_idle_ms,
                last_stale_sweep_reason: s.last_stale_sweep_reason.clone(),
                last_stale_sweep_request_id: s.last_stale_sweep_request_id.clone(),
            })
            .collect();
        PolicyView { defaults: self.config.clone(), platforms, targets }
    }
}
