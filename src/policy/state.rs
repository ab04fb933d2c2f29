//! The persisted policy document (POLICY.md "Persistence"), saved by the
//! store writer in `browser_request_policy_state` under key `"global"`:
//! `{"version":1,"platforms":[...],"targets":[...]}` with exactly the keys
//! below, in this order. Parsing is lenient per entry (a bad entry is
//! skipped, a missing optional field is null) but strict on the envelope: a
//! document that is not JSON, not an object, or not version 1 is rejected
//! as a whole and the policy starts clean.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    let value: Value =
        serde_json::from_str(json).map_err(|e| format!("policy state is not JSON: {e}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| "policy state is not a JSON object".to_string())?;
    match object.get("version").and_then(Value::as_u64) {
        Some(STATE_VERSION) => {}
        _ => {
            return Err(format!(
                "policy state has unknown version {} (expected {STATE_VERSION})",
                object
                    .get("version")
                    .map_or("none".to_string(), Value::to_string)
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
    Ok(Parsed {
        platforms,
        targets,
        skipped,
    })
}

fn array(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        _ => &[],
    }
}
