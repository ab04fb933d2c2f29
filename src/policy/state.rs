//! The persisted policy document (docs/POLICY.md "What survives a restart"), saved by the
//! store writer in `browser_request_policy_state` under key `"global"`:
//! `{"version":1,"platforms":[...],"targets":[...]}` with exactly the keys
//! below, in this order. Parsing is lenient per entry (a bad entry is
//! skipped, a missing optional field is null) but strict on the envelope: a
//! document that is not JSON, not an object, or not version 1 is rejected
//! as a whole and the policy starts clean.
//!
//! This file owns both directions of that document: the serde structs and
//! the lenient parser, and the `impl Controller` block that builds the
//! document from the controller's state (`persisted_json`, `snapshot`) and
//! loads it back (`restore`). Keeping them together keeps the field-by-field
//! mapping between `TargetState` and `TargetDoc` in one place.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::controller::Controller;
use super::rules::{ms, prune};
use super::{CircuitState, Target};

/// The only document version this build reads and writes.
pub const STATE_VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StateDoc {
    pub version: u64,
    pub platforms: Vec<PlatformDoc>,
    pub targets: Vec<TargetDoc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PlatformDoc {
    pub platform: String,
    #[serde(default)]
    pub dispatches: Vec<i64>,
    #[serde(default)]
    pub last_dispatched_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetDoc {
    pub client_id: String,
    pub platform: String,
    /// `closed` | `half_open` | `open`; anything else reads as `closed`.
    #[serde(default)]
    pub circuit_state: String,
    #[serde(default)]
    pub circuit_retry_at: Option<i64>,
    #[serde(default)]
    pub backoff_until: Option<i64>,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub last_activity_at: Option<i64>,
    #[serde(default)]
    pub last_activity_reason: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_failure_at: Option<i64>,
    #[serde(default)]
    pub last_success_at: Option<i64>,
    #[serde(default)]
    pub stale_sweep_count: u64,
    #[serde(default)]
    pub last_stale_sweep_at: Option<i64>,
    #[serde(default)]
    pub last_stale_sweep_idle_ms: Option<u64>,
    #[serde(default)]
    pub last_stale_sweep_reason: Option<String>,
    #[serde(default)]
    pub last_stale_sweep_request_id: Option<String>,
}

/// A parsed document plus the number of entries that had to be skipped.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub platforms: Vec<PlatformDoc>,
    pub targets: Vec<TargetDoc>,
    pub skipped: usize,
}

/// Parses a stored document. `Err` carries the reason the whole document
/// is ignored (the caller logs it and starts clean).
pub(crate) fn parse(json: &str) -> Result<Parsed, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("policy state is not JSON: {e}"))?;
    let object = value.as_object().ok_or_else(|| "policy state is not a JSON object".to_string())?;
    match object.get("version").and_then(Value::as_u64) {
        Some(STATE_VERSION) => {}
        _ => {
            return Err(format!(
                "policy state has unknown version {} (expected {STATE_VERSION})",
                object.get("version").map_or("none".to_string(), Value::to_string)
            ))
        }
    }
    let mut skipped = 0;
    let mut platforms = Vec::new();
    for entry in array(object.get("platforms")) {
        match serde_json::from_value::<PlatformDoc>(entry.clone()) {
            Ok(doc) if !doc.platform.trim().is_empty() => platforms.push(doc),
            _ => skipped += 1,
        }
    }
    let mut targets = Vec::new();
    for entry in array(object.get("targets")) {
        match serde_json::from_value::<TargetDoc>(entry.clone()) {
            Ok(doc) if !doc.client_id.trim().is_empty() && !doc.platform.trim().is_empty() => {
                targets.push(doc)
            }
            _ => skipped += 1,
        }
    }
    Ok(Parsed { platforms, targets, skipped })
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}

impl Controller {
    /// The persisted document as JSON (dispatches pruned to the window).
    pub fn persisted_json(&mut self, now: i64) -> String {
        to_json(&self.snapshot(now))
    }

    pub(crate) fn snapshot(&mut self, now: i64) -> StateDoc {
        let window_ms = ms(self.config.rate_limit.window_ms);
        let limit = self.config.rate_limit.requests_per_minute_per_platform;
        let platforms = self
            .platforms
            .iter_mut()
            .map(|(name, platform)| {
                prune(&mut platform.dispatches, now, window_ms, limit);
                PlatformDoc {
                    platform: name.clone(),
                    dispatches: platform.dispatches.clone(),
                    last_dispatched_at: platform.last_dispatched_at,
                }
            })
            .collect();
        let targets = self
            .targets
            .iter()
            .map(|(target, s)| TargetDoc {
                client_id: target.client_id.clone(),
                platform: target.platform.clone(),
                circuit_state: s.circuit_state.as_str().to_string(),
                circuit_retry_at: s.circuit_retry_at,
                backoff_until: s.backoff_until,
                consecutive_failures: s.consecutive_failures,
                last_activity_at: s.last_activity_at,
                last_activity_reason: s.last_activity_reason.clone(),
                last_error: s.last_error.clone(),
                last_failure_at: s.last_failure_at,
                last_success_at: s.last_success_at,
                stale_sweep_count: s.stale_sweep_count,
                last_stale_sweep_at: s.last_stale_sweep_at,
                last_stale_sweep_idle_ms: s.last_stale_sweep_idle_ms,
                last_stale_sweep_reason: s.last_stale_sweep_reason.clone(),
                last_stale_sweep_request_id: s.last_stale_sweep_request_id.clone(),
            })
            .collect();
        StateDoc { version: STATE_VERSION, platforms, targets }
    }

    /// Loads a persisted document (at start, before any admission):
    /// dispatch times outside the window are dropped and `half_open` comes
    /// back as `open`. `Err` = the whole document is ignored (not JSON, not
    /// an object, unknown version) and the state is left untouched; `Ok`
    /// carries the number of malformed entries that were skipped.
    /// In-flight leases and waiters of this process are kept.
    pub fn restore(&mut self, json: &str, now: i64) -> Result<usize, String> {
        let parsed = parse(json)?;
        let window_ms = ms(self.config.rate_limit.window_ms);
        let limit = self.config.rate_limit.requests_per_minute_per_platform;
        for doc in parsed.platforms {
            let mut dispatches = doc.dispatches;
            dispatches.sort_unstable();
            prune(&mut dispatches, now, window_ms, limit);
            let platform = self.platforms.entry(doc.platform.trim().to_string()).or_default();
            platform.dispatches = dispatches;
            platform.last_dispatched_at = doc.last_dispatched_at;
        }
        for doc in parsed.targets {
            let target = Target::new(doc.client_id.trim(), doc.platform.trim());
            let s = self.targets.entry(target).or_default();
            s.circuit_state = match doc.circuit_state.as_str() {
                "open" | "half_open" => CircuitState::Open,
                _ => CircuitState::Closed,
            };
            s.circuit_retry_at = doc.circuit_retry_at;
            s.backoff_until = doc.backoff_until;
            s.consecutive_failures = doc.consecutive_failures;
            s.last_activity_at = doc.last_activity_at;
            s.last_activity_reason = doc.last_activity_reason;
            s.last_error = doc.last_error;
            s.last_failure_at = doc.last_failure_at;
            s.last_success_at = doc.last_success_at;
            s.stale_sweep_count = doc.stale_sweep_count;
            s.last_stale_sweep_at = doc.last_stale_sweep_at;
            s.last_stale_sweep_idle_ms = doc.last_stale_sweep_idle_ms;
            s.last_stale_sweep_reason = doc.last_stale_sweep_reason;
            s.last_stale_sweep_request_id = doc.last_stale_sweep_request_id;
        }
        Ok(parsed.skipped)
    }
}

/// Serialises the document; our plain structs cannot fail to serialise.
pub(crate) fn to_json(doc: &StateDoc) -> String {
    serde_json::to_string(doc)
        .unwrap_or_else(|_| format!(r#"{{"version":{},"platforms":[],"targets":[]}}"#, STATE_VERSION))
}
