//! The request bodies' schemas, and the answers of the two routes that pass
//! a request on to a plugin. Each body mirrors its parser: `POST
//! /v1/messages` ↔ `bridge::final_message`, actions ↔ `handlers::browser`,
//! the relay ↔ `handlers::relay`; fields a route ignores are allowed, a
//! route that refuses every field (`backup`) says so.

use serde_json::{json, Value};

use super::{nullable, obj, platform, token_id};
use crate::bridge::final_message::{latest_observed_at, MAX_ROUTE_PARAMS_BYTES};
use crate::http::leased::MAX_ACTION_TIMEOUT_MS;
use crate::util::now_ms;

/// A string of at most `max` bytes of UTF-8, or null.
fn opt_bytes(max: usize) -> Value {
    json!({ "type": ["string", "null"], "maxLength": max,
            "description": format!("At most {max} bytes of UTF-8.") })
}

fn or_null(mut schema: Value) -> Value {
    let kind = schema["type"].clone();
    schema["type"] = json!([kind, "null"]);
    schema
}

fn positive_int() -> Value {
    json!({ "type": ["integer", "null"], "minimum": 1, "maximum": i64::MAX })
}

fn timeout() -> Value {
    json!({ "type": ["integer", "null"], "minimum": 1, "maximum": MAX_ACTION_TIMEOUT_MS })
}

/// A body whose fields are all ignored (any object, or none).
pub fn ignored() -> Value {
    json!({ "type": "object" })
}

/// A body that must carry no field at all.
pub fn nothing() -> Value {
    json!({ "type": "object", "maxProperties": 0,
            "description": "No field: the daemon chooses where a backup goes." })
}

/// An optional free-text reason.
pub fn reason() -> Value {
    json!({ "type": "object", "properties": {
        "reason": { "type": ["string", "null"], "maxLength": 512,
                    "description": "Shown with the state; blank counts as none." },
    } })
}

/// `POST /v1/messages`: docs/BRIDGE.md `browser.final_message`. The maximum
/// of `observed_at` is the daemon's own bound, computed when the document is.
pub fn final_message() -> Value {
    let id = json!({ "type": "string", "minLength": 1, "maxLength": 512,
                     "description": "At most 512 bytes of UTF-8." });
    json!({
        "type": "object",
        "required": ["platform", "conversation_id", "message_id", "text"],
        "properties": {
            "platform": platform(),
            "conversation_id": id,
            "message_id": id,
            "role": { "type": ["string", "null"], "pattern": "^[a-z_]{1,32}$", "default": "assistant" },
            "text": { "type": "string", "description": "Must not be empty for an assistant message." },
            "observed_at": { "type": ["integer", "null"], "minimum": 0,
                             "maximum": latest_observed_at(now_ms()),
                             "description": "Milliseconds since the epoch, default now; at most the end of tomorrow (UTC)." },
            "tab_id": positive_int(),
            "shell_page": { "type": ["boolean", "null"] },
            "client_id": or_null(token_id()),
            "page_url": opt_bytes(8192),
            "page_title": opt_bytes(2048),
            "organization_id": opt_bytes(512),
            "route": { "type": ["object", "null"], "properties": {
                "path": opt_bytes(2048), "pattern": opt_bytes(2048),
                "params": { "type": ["object", "null"],
                            "description": format!("At most {MAX_ROUTE_PARAMS_BYTES} bytes as JSON.") } } },
        },
        // An assistant's text (the default role) is never empty.
        "if": { "anyOf": [
            { "not": { "required": ["role"] } },
            { "properties": { "role": { "enum": ["assistant", null] } } },
        ] },
        "then": { "properties": { "text": { "minLength": 1 } } },
    })
}

/// `POST /v1/browser/actions`.
pub fn action() -> Value {
    json!({
        "type": "object",
        "required": ["action"],
        "properties": {
            "action": { "type": "string", "pattern": "^[a-z][a-z0-9_.]{0,63}$" },
            "platform": or_null(platform()),
            "client_id": or_null(token_id()),
            "tab_id": positive_int(),
            "payload": { "type": ["object", "null"] },
            "timeout_ms": timeout(),
        },
    })
}

pub fn action_answer() -> Value {
    obj(json!({
        "accepted": {}, "completed": {}, "failed": {}, "reason": {}, "target": {}, "result": {},
        "client_id": { "type": "string" }, "connection_id": {}, "request_id": { "type": "string" },
    }))
}

/// `POST /v1/browser/request`: `path` is on the platform's origin — one
/// leading `/`, not `//` or `/\`, no control character.
pub fn relay() -> Value {
    json!({
        "type": "object",
        "required": ["platform", "method", "path"],
        "properties": {
            "platform": platform(),
            "method": { "type": "string", "pattern": "^[A-Z]{1,16}$" },
            "path": { "type": "string", "maxLength": 8192,
                      "pattern": "^/([^/\\\\\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*)?$" },
            "headers": { "type": ["object", "null"], "additionalProperties": { "type": "string" } },
            "body": { "description": "Sent as the request's body (JSON)." },
            "stream": { "type": ["boolean", "null"] },
            "client_id": or_null(token_id()),
            "timeout_ms": timeout(),
        },
    })
}

/// A plain answer is enveloped JSON; a streamed one (`stream: true`) is
/// server-sent events.
pub fn relay_answer() -> Value {
    let mut content = super::envelope(obj(json!({
        "status": nullable("integer"), "headers": {}, "body": {},
        "client_id": { "type": "string" }, "platform": platform(),
        "request_id": { "type": "string" }, "admission": { "type": "object" },
    })));
    content["text/event-stream"] = json!({ "schema": { "type": "string" } });
    content
}
