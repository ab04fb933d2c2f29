//! Sending to a plugin under a policy lease, for the HTTP routes that do
//! (platform actions, `handlers/browser.rs`; the raw relay,
//! `handlers/relay.rs`): the caller's `timeout_ms`, the admission within
//! it, the rate delay waited out while watching the plugin and the stop,
//! and how a plugin-side error becomes the policy's outcome and the API's
//! error.

use std::time::Instant;

use serde_json::{json, Value};

use crate::bridge::RequestError;
use crate::http::api::ApiError;
use crate::http::body::Object;
use crate::http::ctx::Ctx;
use crate::policy::{AdmitOptions, Lease, Outcome, Refusal, RefusalCode, Target};
use crate::util::nap_until;

/// Longest a caller may ask an action to wait for the plugin.
pub const MAX_ACTION_TIMEOUT_MS: u64 = 300_000;

/// The optional `timeout_ms` of a request body, bounded.
pub fn timeout_ms(body: &Object, default: u64) -> Result<u64, ApiError> {
    match body.get("timeout_ms") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => crate::browser_json::integer(v)
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| (1..=MAX_ACTION_TIMEOUT_MS).contains(t))
            .ok_or_else(|| {
                ApiError::invalid(
                    "timeout_ms",
                    format!("Field \"timeout_ms\" must be an integer from 1 to {MAX_ACTION_TIMEOUT_MS}."),
                )
            }),
    }
}

/// Asks the policy for a lease, waiting in the target's queue and through
/// the rate delay only as long as `deadline` allows; sleeps the delay.
pub fn admit(
    ctx: &Ctx,
    client: &str,
    platform: &str,
    request_id: &str,
    deadline: Instant,
) -> Result<Lease, ApiError> {
    let left = deadline.saturating_duration_since(Instant::now());
    let opts = AdmitOptions { max_wait: left, max_delay_ms: left.as_millis() as u64, one_deadline: true };
    let lease = ctx.policy.admit(Target::new(client, platform), request_id, opts).map_err(refusal_error)?;
    // The rate delay is waited out in short naps, watching the client: if
    // it goes away meanwhile the caller hears so at once (502), and the
    // dropped lease counts as cancelled, not as the target's failure. The
    // daemon stopping while this caller was queued or is waiting: it
    // answers 503 now rather than being cut off without an answer.
    let ready = lease.ready_instant();
    nap_until(ready, || {
        if ctx.hub.is_closing() {
            return Some(RequestError::ShuttingDown);
        }
        // The client is looked up only while there is a delay to wait out.
        let gone = Instant::now() < ready && ctx.hub.chosen_client(Some(platform), Some(client)).is_none();
        gone.then_some(RequestError::ClientDisconnected)
    })?;
    Ok(lease)
}

/// A request that could not be sent to a client chosen before admission:
/// that client went away meanwhile (502), which is not a failure of the
/// target — nothing went out.
pub fn unsent(err: RequestError) -> RequestError {
    match err {
        RequestError::NoActiveClient => RequestError::ClientDisconnected,
        other => other,
    }
}

/// The policy's refusal as a 429 with `retry_after_ms`.
pub fn refusal_error(refusal: Refusal) -> ApiError {
    let message = match refusal.code {
        RefusalCode::CircuitOpen => "The target's circuit breaker is open after repeated failures.",
        RefusalCode::BackoffActive => "The target failed recently and is backing off.",
        RefusalCode::WaiterTimeout => "The target stayed busy for the whole wait.",
        RefusalCode::RateLimited => "The platform's rate limit would delay this past its timeout.",
    };
    ApiError::new(429, refusal.code.as_str(), message, json!({ "retry_after_ms": refusal.retry_after_ms }))
}

/// The failure code a plugin-side error gives the policy.
pub fn policy_code(err: RequestError) -> &'static str {
    match err {
        RequestError::Timeout => "timeout",
        other => other.code(),
    }
}

/// What a plugin-side error tells the policy: a failure of the target,
/// except the daemon's own stop, which says nothing about the target.
pub fn policy_outcome(err: RequestError) -> Outcome {
    match err {
        // Neither the daemon's stop nor a slow HTTP caller says anything
        // about the target.
        RequestError::ShuttingDown | RequestError::CallerTooSlow => Outcome::Cancelled,
        other => Outcome::failure(policy_code(other)),
    }
}

impl From<RequestError> for ApiError {
    fn from(err: RequestError) -> ApiError {
        let (status, message) = match err {
            RequestError::NoActiveClient => (503, "No connected plugin serves this platform or client."),
            RequestError::ClientDisconnected => (502, "The plugin disconnected before answering."),
            RequestError::ClientReplaced => (502, "The plugin connection was replaced before answering."),
            RequestError::Timeout => (504, "The plugin did not answer in time."),
            RequestError::ShuttingDown => (503, "The daemon is shutting down."),
            RequestError::CallerTooSlow => (502, "The answer was not read fast enough."),
        };
        ApiError::new(status, err.code(), message, json!({}))
    }
}
