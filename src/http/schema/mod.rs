//! What each route reads and answers, as JSON Schema: one `Io` per row of
//! the route table (`routes.rs`), from which the OpenAPI document
//! (`handlers/meta.rs`) takes its request bodies, query parameters and
//! answers. The patterns, bounds and enumerations here are the ones the
//! handlers enforce (the store's `ALL` lists, the shared limits), so a
//! schema-valid request is accepted and an invalid one refused with a 400;
//! `scripts/api_checks` holds the daemon to that with schemathesis.
//!
//! String bounds are in characters (JSON Schema's `maxLength`); where the
//! daemon counts UTF-8 bytes (ids, URLs, query filters) the description
//! says so.

mod bodies;
pub mod objects;

use serde_json::{json, Map, Value};

pub use objects::{components, r};

use crate::http::query::{MAX_FILTER_BYTES, MAX_LIMIT};

/// A route's request and answer.
pub struct Io {
    /// The JSON request body (write routes); `None`: no body is read.
    pub body: Option<fn() -> Value>,
    /// The 200 answer's `content` map (media type → schema).
    pub ok: fn() -> Value,
    /// The values of the route's `status` query filter, if it has one.
    pub status: &'static [&'static str],
}

/// `[a-z0-9_-]{1,32}`: a platform name.
pub fn platform() -> Value {
    json!({ "type": "string", "pattern": "^[a-z0-9_-]{1,32}$" })
}

/// `[A-Za-z0-9._:-]{1,128}`: client ids.
pub fn token_id() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$" })
}

pub fn nullable(kind: &str) -> Value {
    json!({ "type": [kind, "null"] })
}

pub fn enum_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

/// An object whose every property is required.
pub fn obj(properties: Value) -> Value {
    let required: Vec<String> =
        properties.as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default();
    json!({ "type": "object", "required": required, "properties": properties })
}

/// The success envelope around `data`.
fn envelope(data: Value) -> Value {
    json!({ "application/json": { "schema": obj(json!({
        "ok": { "const": true }, "request_id": { "type": "string" }, "data": data,
    })) } })
}

/// The list envelope of docs/API.md "Lists: pagination and filters".
fn list(key: &str, item: &str) -> Value {
    envelope(obj(json!({
        "count": { "type": "integer", "minimum": 0 },
        "filters": { "type": "object" },
        "next_offset": nullable("integer"),
        key: { "type": "array", "items": r(item) },
    })))
}

/// The schema of query parameter `name` of a route whose `status` filter
/// takes `status`.
pub fn query_param(name: &str, status: &[&str]) -> Value {
    let text = json!({ "type": "string", "minLength": 1, "maxLength": MAX_FILTER_BYTES,
        "description": format!("At most {MAX_FILTER_BYTES} bytes of UTF-8.") });
    match name {
        "limit" => json!({ "type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50 }),
        "offset" => json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX, "default": 0 }),
        "status" => enum_of(status),
        "active" => enum_of(&["true", "false"]),
        // Words are split at Unicode white space (Rust's `char::is_whitespace`);
        // `*` only marks a prefix, so `q` needs one other character.
        "q" => {
            let mut q = text;
            q["pattern"] = json!("[^\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}*]");
            q
        }
        _ => text,
    }
}

fn data(schema: Value) -> Value {
    envelope(schema)
}

fn any_object() -> Value {
    json!({ "type": "object" })
}

macro_rules! io {
    ($name:ident, $body:expr, $ok:expr) => {
        io!($name, $body, $ok, &[]);
    };
    ($name:ident, $body:expr, $ok:expr, $status:expr) => {
        pub const $name: Io = Io { body: $body, ok: $ok, status: $status };
    };
}

use crate::http::handlers::{artifact, browser};
use crate::store::{ConversationStatus, ExecutionStatus, JobStatus};

io!(HEALTH, None, || data(obj(json!({ "status": { "const": "ok" } }))));
io!(DESCRIBE, None, || data(obj(json!({
    "name": { "type": "string" }, "version": { "type": "string" },
    "routes": { "type": "array", "items": obj(json!({ "id": { "type": "string" },
        "kind": { "enum": ["probe", "read", "write"] }, "method": { "type": "string" },
        "path": { "type": "string" }, "summary": { "type": "string" } })) },
}))));
io!(OPENAPI, None, || json!({ "application/json": { "schema": {
    "type": "object", "required": ["openapi", "info", "paths"] } } }));
io!(METRICS, None, || json!({ "text/plain": { "schema": { "type": "string",
    "description": "Prometheus text exposition format 0.0.4." } } }));
io!(PAGE, None, || json!({ "text/html": { "schema": { "type": "string" } } }));
io!(SYSTEM, None, || data(r("System")));
io!(SYSTEM_SWITCH, Some(bodies::reason), || data(r("System")));
io!(BACKUP, Some(bodies::nothing), || data(obj(json!({
    "file": { "type": "string" }, "path": { "type": "string" }, "bytes": { "type": "integer" },
    "schema_version": { "type": "integer" }, "integrity": { "const": "ok" },
    "started_at": { "type": "integer" }, "finished_at": { "type": "integer" },
}))));
io!(MESSAGES, None, || list("messages", "Message"));
io!(MESSAGE, None, || data(r("Message")));
io!(INGEST, Some(bodies::final_message), || data(obj(json!({
    "message": r("Message"), "local_conversation_id": nullable("string"),
    "link_id": nullable("string"), "duplicate": { "type": "boolean" },
}))));
io!(CONVERSATIONS, None, || list("conversations", "Conversation"), &ConversationStatus::ALL);
io!(CONVERSATION, None, || data(r("Conversation")));
io!(CONVERSATION_SWITCH, Some(bodies::ignored), || data(r("Conversation")));
io!(CONVERSATION_PAUSE, Some(bodies::reason), || data(r("Conversation")));
io!(LINKS, None, || list("links", "Link"));
io!(JOBS, None, || list("jobs", "Job"), &JobStatus::ALL);
io!(JOB, None, || data(r("Job")));
io!(JOB_CHANGE, Some(bodies::ignored), || data(r("Job")));
io!(EXECUTIONS, None, || list("executions", "Execution"), &ExecutionStatus::ALL);
io!(EXECUTION, None, || data(r("Execution")));
io!(
    BROWSER,
    None,
    || data(obj(json!({
        "clients": { "type": "array", "items": { "type": "object" } },
        "login_states": { "type": "array", "items": { "type": "object" } },
        "policy": any_object(),
    }))),
    &browser::LOGIN_STATUSES
);
io!(ACTIONS, Some(bodies::action), || data(bodies::action_answer()));
io!(RELAY, Some(bodies::relay), bodies::relay_answer);
io!(TIMED, None, || data(obj(json!({
    "interval_ms": { "type": "integer" }, "role": { "enum": ["primary", "standby"] },
    "log_dir": { "type": "string" }, "last_recovery": { "type": ["object", "null"] },
    "runners": { "type": "array", "items": { "type": "object" } },
}))));
io!(ARTIFACT_MESSAGE, None, || json!({ "text/plain": { "schema": { "type": "string" } } }));
io!(ARTIFACT_FILE, None, || {
    let mut content = Map::new();
    for media in artifact::MEDIA_TYPES {
        content.insert(media.to_string(), json!({ "schema": { "type": "string" } }));
    }
    Value::Object(content)
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AutomationState, ExecutionState, ParamsKind, PayloadKind};

    /// The `ALL` lists the schemas show are exactly what each enum parses
    /// and writes back.
    #[test]
    fn enumerations_match_their_parsers() {
        macro_rules! round_trip {
            ($($t:ty),*) => {$(
                for v in <$t>::ALL {
                    assert_eq!(<$t>::parse(v).map(|x| x.as_str()), Some(v), stringify!($t));
                }
            )*};
        }
        round_trip!(AutomationState, ExecutionState, PayloadKind, ParamsKind);
        assert!(AutomationState::parse("stopped").is_none());
    }

    #[test]
    fn query_parameters_carry_the_daemon_bounds() {
        assert_eq!(query_param("limit", &[])["maximum"], MAX_LIMIT);
        assert_eq!(query_param("status", &JobStatus::ALL)["enum"], json!(JobStatus::ALL));
        assert_eq!(query_param("platform", &[])["minLength"], 1);
        assert!(query_param("q", &[])["pattern"].as_str().unwrap().ends_with("*]"));
    }
}
