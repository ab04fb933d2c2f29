//! The raw relay, `POST /v1/browser/request`: a script's HTTP request is
//! performed by the plugin inside the logged-in page. Order of checks:
//! client, login state, policy (waiting in the target's queue and through a
//! rate delay only while the caller's `timeout_ms` allows), then
//! `api_request` through the hub. Failures before the first byte are JSON
//! errors; a streamed answer is relayed as server-sent events, each plugin
//! frame written as soon as it arrives, with sequence checking. Every
//! outcome is fed back to the policy.
//!
//! Waiting never holds anything shared: the transport gives each connection
//! its own thread, and a relay holds only that thread and one of
//! `ctx::MAX_RELAYS` relay slots (past the bound: 503 `relay_busy`). A streamed
//! answer is pumped by its own `relay-stream` thread, within the same slot.

use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Sender};
use serde_json::{json, Value};

use crate::bridge::final_message::{valid_platform, valid_token_id};
use crate::bridge::{PendingRequest, RequestError};
use crate::http::api::{ApiError, ApiRequest, Reply};
use crate::http::body::{opt_str, Object};
use crate::http::ctx::Ctx;
use crate::http::leased::{admit, policy_outcome, timeout_ms, unsent};
use crate::http::server::Body;
use crate::policy::{Lease, Outcome};
use crate::util::Permit;

const DEFAULT_TIMEOUT_MS: u64 = 60_000;

struct RelayInput {
    platform: String,
    method: String,
    path: String,
    headers: Value,
    body: Value,
    stream: bool,
    client_id: Option<String>,
    timeout_ms: u64,
}

fn parse(body: &Object) -> Result<RelayInput, ApiError> {
    let platform = opt_str(body, "platform", 32)?.filter(|p| valid_platform(p));
    let platform = platform.ok_or_else(|| {
        ApiError::invalid("platform", "Field \"platform\" is required and must match [a-z0-9_-]{1,32}.")
    })?;
    let method =
        opt_str(body, "method", 16)?.filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase()));
    let method = method.ok_or_else(|| {
        ApiError::invalid("method", "Field \"method\" is required: an upper-case HTTP method such as GET.")
    })?;
    // `//host/x` (or `/\host/x`, which browsers read alike) would resolve to
    // another host rather than the platform's origin; and browsers drop tab,
    // CR and LF from a URL before resolving it (`/\t/host` is `//host`), so
    // no control character is allowed at all.
    let path = opt_str(body, "path", 8192)?.filter(|p| {
        p.starts_with('/')
            && !p.starts_with("//")
            && !p.starts_with("/\\")
            && !p.chars().any(char::is_control)
    });
    let path = path.ok_or_else(|| {
        ApiError::invalid(
            "path",
            "Field \"path\" is required and must start with one \"/\" (a path on the platform's origin).",
        )
    })?;
    let headers = match body.get("headers") {
        None | Some(Value::Null) => json!({}),
        Some(Value::Object(h)) if h.values().all(Value::is_string) => Value::Object(h.clone()),
        Some(_) => {
            return Err(ApiError::invalid("headers", "Field \"headers\" must be an object of strings."))
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("stream", "Field \"stream\" must be a boolean.")),
    };
    let client_id = opt_str(body, "client_id", 128)?;
    if client_id.as_deref().is_some_and(|c| !valid_token_id(c)) {
        return Err(ApiError::invalid("client_id", "Field \"client_id\" must match [A-Za-z0-9._:-]{1,128}."));
    }
    Ok(RelayInput {
        platform,
        method,
        path,
        headers,
        body: body.get("body").cloned().unwrap_or(Value::Null),
        stream,
        client_id,
        timeout_ms: timeout_ms(body, DEFAULT_TIMEOUT_MS)?,
    })
}

pub fn handle_request(ctx: &Ctx, req: &ApiRequest) -> Result<Reply, ApiError> {
    let input = parse(&req.json_object()?)?;
    let deadline = Instant::now() + Duration::from_millis(input.timeout_ms);
    let slot = ctx.relays.try_take().ok_or_else(|| {
        let message = format!("{} relays are already open; try again.", ctx.relays.max());
        ApiError::new(503, "relay_busy", message, json!({}))
    })?;
    let client = ctx
        .hub
        .chosen_client(Some(&input.platform), input.client_id.as_deref())
        .ok_or(RequestError::NoActiveClient)?;
    require_login(ctx, &client, &input.platform)?;
    let lease = admit(ctx, &client, &input.platform, &req.request_id, deadline)?;
    let remaining = deadline.saturating_duration_since(Instant::now()).as_millis().max(1) as u64;
    let pending = ctx.hub.request(Some(&input.platform), Some(&client), "ar_", |request_id| {
        json!({
            "type": "api_request", "request_id": request_id, "platform": input.platform, "method": input.method,
            "path": input.path, "headers": input.headers, "body": input.body, "stream": input.stream,
            "timeout_ms": remaining,
        })
        .to_string()
    });
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            // Nothing went out: not the target's failure.
            lease.complete(Outcome::Cancelled);
            return Err(unsent(e).into());
        }
    };
    let first = match pending.next(deadline) {
        Ok(frame) => frame,
        Err(e) => {
            lease.complete(policy_outcome(e));
            return Err(e.into());
        }
    };
    let admission = json!({
        "admitted_at": lease.admitted_at, "rate_limit_delay_ms": lease.rate_limit_delay_ms, "jitter_ms": lease.jitter_ms,
    });
    match first.get("type").and_then(Value::as_str) {
        Some("api_response") => Ok(plain_answer(first, lease, &pending, &input.platform, admission)),
        Some(t) if t.starts_with("stream_") => stream_answer(first, lease, pending, input.timeout_ms, slot),
        _ => {
            lease.complete(Outcome::failure("invalid_response"));
            Err(ApiError::new(
                502,
                "invalid_response",
                "The plugin answered with an unexpected frame.",
                json!({}),
            ))
        }
    }
}

/// A relay runs inside the logged-in page: a client that has reported no
/// login state for the platform is refused (409) before the policy is asked.
fn require_login(ctx: &Ctx, client: &str, platform: &str) -> Result<(), ApiError> {
    if ctx.hub.has_login(client, platform) {
        return Ok(());
    }
    Err(ApiError::new(
        409,
        "credentials_missing",
        format!("Client \"{client}\" has reported no login state for {platform}."),
        json!({ "client_id": client, "platform": platform }),
    ))
}

/// Upstream 2xx/3xx/4xx other than 429 is a success for the policy.
fn outcome_for_status(status: Option<i64>) -> Outcome {
    match status {
        Some(s) if s == 429 || s >= 500 => Outcome::failure(format!("upstream_{s}")),
        Some(_) => Outcome::Success,
        None => Outcome::failure("invalid_response"),
    }
}

fn plain_answer(
    frame: Value,
    lease: Lease,
    pending: &PendingRequest,
    platform: &str,
    admission: Value,
) -> Reply {
    let status = frame.get("status").and_then(Value::as_i64);
    lease.complete(outcome_for_status(status));
    let field = |k: &str| frame.get(k).cloned().unwrap_or(Value::Null);
    Reply::Json(json!({
        "status": status, "headers": field("headers"), "body": field("body"), "client_id": pending.client_id,
        "platform": platform, "request_id": pending.request_id, "admission": admission,
    }))
}

fn stream_answer(
    first: Value,
    lease: Lease,
    pending: PendingRequest,
    idle_ms: u64,
    slot: Permit,
) -> Result<Reply, ApiError> {
    // Few events between the pump and the connection: the hub's per-request
    // byte bound (`MAX_BUFFERED_ANSWER_BYTES`) is where a stream waits.
    let (tx, rx) = bounded::<Vec<u8>>(STREAM_CHUNKS);
    let pump = Pump { tx, seq: 0, received: 0, idle: Duration::from_millis(idle_ms) };
    std::thread::Builder::new()
        .name("relay-stream".into())
        .spawn(move || {
            let _slot = slot;
            pump.run(first, lease, pending)
        })
        .map_err(|e| {
            log::error!("relay: cannot spawn stream thread: {e}");
            ApiError::internal()
        })?;
    Ok(Reply::Raw {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/event-stream; charset=utf-8".into()),
            ("Cache-Control".into(), "no-cache".into()),
        ],
        body: Body::Stream(rx),
    })
}

/// Rendered events queued between the pump and the HTTP connection.
const STREAM_CHUNKS: usize = 16;

/// Turns plugin stream frames into server-sent events, checking `seq`.
struct Pump {
    tx: Sender<Vec<u8>>,
    /// `seq` of the last event passed on.
    seq: i64,
    received: u64,
    /// Longest silence between two frames before the stream fails.
    idle: Duration,
}

impl Pump {
    fn run(mut self, first: Value, lease: Lease, pending: PendingRequest) {
        let mut frame = first;
        let outcome = loop {
            match self.step(&frame) {
                // A stream that keeps delivering is not an idle lease.
                Step::Continue => {
                    let _ = lease.touch("stream_event");
                }
                Step::Done(outcome) => break outcome,
            }
            match pending.next(Instant::now() + self.idle) {
                Ok(next) => frame = next,
                Err(RequestError::CallerTooSlow) => {
                    self.error(
                        "caller_too_slow",
                        "The stream was not read fast enough; its events piled up.",
                    );
                    break policy_outcome(RequestError::CallerTooSlow);
                }
                Err(e) => {
                    self.error(e.code(), "The plugin stopped answering the stream.");
                    break policy_outcome(e);
                }
            }
        };
        lease.complete(outcome);
    }

    fn step(&mut self, frame: &Value) -> Step {
        let seq = frame.get("seq").and_then(Value::as_i64).unwrap_or(0);
        if seq != self.seq + 1 {
            self.error("sequence_gap", &format!("Expected seq {}, got {seq}.", self.seq + 1));
            return Step::Done(Outcome::failure("sequence_gap"));
        }
        match frame.get("type").and_then(Value::as_str) {
            Some("stream_event") => {
                let data = frame.get("data").cloned().unwrap_or(Value::Null);
                if !self.send("stream_event", json!({ "seq": seq, "data": data })) {
                    // The caller hung up: the request was not finished.
                    return Step::Done(Outcome::Cancelled);
                }
                self.seq = seq;
                self.received += 1;
                Step::Continue
            }
            Some("stream_end") => {
                let status = frame.get("status").and_then(Value::as_i64);
                self.send("stream_end", json!({ "seq": seq, "status": status }));
                Step::Done(outcome_for_status(status))
            }
            _ => {
                let code = frame.get("code").and_then(Value::as_str).unwrap_or("stream_error").to_string();
                let message =
                    frame.get("message").and_then(Value::as_str).unwrap_or("The plugin's stream failed.");
                self.error(&code, message);
                Step::Done(Outcome::failure(code))
            }
        }
    }

    fn error(&self, code: &str, message: &str) {
        let partial = json!({ "seq": self.seq, "received": self.received });
        self.send("stream_error", json!({ "code": code, "message": message, "partial": partial }));
    }

    fn send(&self, event: &str, data: Value) -> bool {
        self.tx.send(format!("event: {event}\ndata: {data}\n\n").into_bytes()).is_ok()
    }
}

enum Step {
    Continue,
    Done(Outcome),
}
