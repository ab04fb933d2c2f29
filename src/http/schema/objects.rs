//! JSON Schemas of the objects the API answers with (docs/API.md "Message
//! object", "Conversation object", …), shown under the OpenAPI document's
//! `components.schemas` and checked against live answers by schemathesis
//! (`scripts/api_checks`). Each object's fields are always present (see
//! `views.rs`), so every property is required unless said otherwise;
//! enumerations come from the store's own `ALL` lists.

use serde_json::{json, Map, Value};

use super::{enum_of, nullable, obj, platform};
use crate::store::{
    AutomationState, ConversationStatus, ExecutionState, ExecutionStatus, JobStatus, ParamsKind, PayloadKind,
};

/// A reference to one of `components()`.
pub fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// Stored JSON copied through as it is (or as a string when damaged).
fn stored_json(what: &str) -> Value {
    json!({ "description": format!("{what}: the stored JSON as it is.") })
}

fn message() -> Value {
    let mut m = obj(json!({
        "message_id": { "type": "string", "minLength": 1 },
        "platform": platform(),
        "conversation_id": { "type": "string", "minLength": 1 },
        "role": { "type": "string", "pattern": "^[a-z_]{1,32}$" },
        "summary": nullable("string"),
        "page_url": nullable("string"),
        "page_title": nullable("string"),
        "tab_id": nullable("integer"),
        "client_id": nullable("string"),
        "organization_id": nullable("string"),
        "observed_at": { "type": "integer", "minimum": 0 },
        "created_at": { "type": "integer" },
        "artifact_url": { "type": "string" },
        "raw_text": { "type": "string", "description": "Single reads and ingest answers only." },
        "search": {
            "description": "Search results (`q`) only: how the message matched.",
            "type": "object", "required": ["score", "snippet", "snippet_parts"],
            "properties": {
                "score": { "type": "number" },
                "snippet": { "type": "string" },
                "snippet_parts": { "type": "array", "items": obj(json!({
                    "text": { "type": "string" }, "match": { "type": "boolean" } })) },
            },
        },
    }));
    let required = m["required"].as_array_mut().expect("obj lists required");
    required.retain(|k| k != "raw_text" && k != "search");
    m
}

fn link() -> Value {
    obj(json!({
        "link_id": { "type": "string" },
        "local_conversation_id": { "type": "string" },
        "platform": platform(),
        "client_id": nullable("string"),
        "remote_conversation_id": { "type": "string" },
        "page_url": nullable("string"),
        "page_title": nullable("string"),
        "route_path": nullable("string"),
        "route_pattern": nullable("string"),
        "route_params": stored_json("The page route's parameters ({} when none)"),
        "target_kind": nullable("string"),
        "target_id": nullable("string"),
        "target_payload": stored_json("The delivery target ({} when none)"),
        "is_active": { "type": "boolean" },
        "observed_at": { "type": "integer" },
        "created_at": { "type": "integer" },
        "updated_at": { "type": "integer" },
    }))
}

fn conversation() -> Value {
    obj(json!({
        "local_conversation_id": { "type": "string" },
        "platform": platform(),
        "automation_status": enum_of(&ConversationStatus::ALL),
        "last_non_paused_automation_status": enum_of(&ConversationStatus::ALL),
        "pause_reason": nullable("string"),
        "last_error": nullable("string"),
        "execution_state": enum_of(&ExecutionState::ALL),
        "consecutive_failure_count": { "type": "integer" },
        "repeated_message_count": { "type": "integer" },
        "repeated_renewal_count": { "type": "integer" },
        "title": nullable("string"),
        "summary": nullable("string"),
        "last_message_id": nullable("string"),
        "last_message_at": nullable("integer"),
        "cooldown_until": nullable("integer"),
        "paused_at": nullable("integer"),
        "created_at": { "type": "integer" },
        "updated_at": { "type": "integer" },
        "active_link": { "oneOf": [r("Link"), { "type": "null" }] },
    }))
}

fn job() -> Value {
    obj(json!({
        "job_id": { "type": "string" },
        "local_conversation_id": { "type": "string" },
        "message_id": { "type": "string" },
        "status": enum_of(&JobStatus::ALL),
        "payload_kind": enum_of(&PayloadKind::ALL),
        "payload": stored_json("The text (`text`) or the JSON document (`json`)"),
        "payload_text": nullable("string"),
        "target_snapshot": stored_json("The delivery target when the job was made (null if none)"),
        "attempt_count": { "type": "integer" },
        "max_attempts": { "type": "integer" },
        "next_attempt_at": nullable("integer"),
        "last_attempt_at": nullable("integer"),
        "last_error": nullable("string"),
        "log_path": nullable("string"),
        "started_at": nullable("integer"),
        "finished_at": nullable("integer"),
        "created_at": { "type": "integer" },
        "updated_at": { "type": "integer" },
    }))
}

fn execution() -> Value {
    obj(json!({
        "instruction_id": { "type": "string" },
        "message_id": { "type": "string" },
        "local_conversation_id": { "type": "string" },
        "block_index": { "type": "integer", "minimum": 0 },
        "target": nullable("string"),
        "tool": nullable("string"),
        "params_kind": { "oneOf": [enum_of(&ParamsKind::ALL), { "type": "null" }] },
        "params": stored_json("The object (`json`), the text (`text`) or null"),
        "status": enum_of(&ExecutionStatus::ALL),
        "summary": nullable("string"),
        "result": stored_json("The tool's result object, or null"),
        "error": nullable("string"),
        "artifact_path": nullable("string"),
        "artifact_url": nullable("string"),
        "started_at": nullable("integer"),
        "finished_at": nullable("integer"),
        "created_at": { "type": "integer" },
    }))
}

fn system() -> Value {
    let jobs = obj(json!({ "pending": { "type": "integer" }, "running": { "type": "integer" },
        "done": { "type": "integer" }, "failed": { "type": "integer" } }));
    obj(json!({
        "node_id": { "type": "string" },
        "role": { "enum": ["primary", "standby"] },
        "version": { "type": "string" },
        "automation_state": enum_of(&AutomationState::ALL),
        "automation_reason": nullable("string"),
        "drained": { "type": "boolean" },
        "started_at": { "type": "integer" },
        "uptime_ms": { "type": "integer", "minimum": 0 },
        "pid": { "type": "integer" },
        "state_dir": { "type": "string" },
        "http_base": { "type": "string" },
        "ws_url": { "type": "string" },
        "counts": obj(json!({ "messages": { "type": "integer" }, "conversations": { "type": "integer" },
            "jobs": jobs })),
        "clients": { "type": "integer", "minimum": 0 },
        "instruction_blocks": obj(json!({ "enabled": { "type": "boolean" },
            "allowed_tools": { "type": "array", "items": { "type": "string" } } })),
    }))
}

fn error() -> Value {
    obj(json!({
        "ok": { "const": false },
        "request_id": { "type": "string" },
        "error": obj(json!({
            "code": { "type": "string", "pattern": "^[a-z_]+$" },
            "message": { "type": "string" },
            "details": { "type": "object" },
        })),
    }))
}

/// `components.schemas` of the OpenAPI document.
pub fn components() -> Map<String, Value> {
    let mut out = Map::new();
    for (name, schema) in [
        ("Message", message()),
        ("Link", link()),
        ("Conversation", conversation()),
        ("Job", job()),
        ("Execution", execution()),
        ("System", system()),
        ("Error", error()),
    ] {
        out.insert(name.into(), schema);
    }
    out
}
