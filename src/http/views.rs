//! JSON renderings of store rows: the API's object shapes (HTTP_API.md
//! "Message object", "Conversation object", "Link object", "Job object").
//! Every documented field is always present, `null` when unknown, so
//! `jq .data.finished_at` works on every object.

use serde_json::{json, Value};

pub use crate::util::artifact_url;
use crate::store::{Conversation, Job, Link, Message};

/// Parses stored JSON text back to a value; a damaged value is shown as its
/// text rather than failing the whole response.
fn parsed(text: &Option<String>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())),
    }
}

pub fn message(m: &Message, public_base: &str) -> Value {
    let mut v = json!({
        "message_id": m.message_id, "platform": m.platform, "conversation_id": m.conversation_id,
        "role": m.role, "summary": m.summary, "page_url": m.page_url, "page_title": m.page_title,
        "tab_id": m.tab_id, "client_id": m.client_id, "organization_id": m.organization_id,
        "observed_at": m.observed_at, "created_at": m.created_at,
        "artifact_url": artifact_url(public_base, &m.message_id),
    });
    if let Some(text) = &m.raw_text {
        v["raw_text"] = Value::String(text.clone());
    }
    v
}

pub fn link(l: &Link) -> Value {
    json!({
        "link_id": l.link_id, "local_conversation_id": l.local_conversation_id, "platform": l.platform,
        "client_id": l.client_id, "remote_conversation_id": l.remote_conversation_id,
        "page_url": l.page_url, "page_title": l.page_title, "route_path": l.route_path,
        "route_pattern": l.route_pattern,
        "route_params": match parsed(&l.route_params) { Value::Null => json!({}), v => v },
        "target_kind": l.target_kind, "target_id": l.target_id,
        "target_payload": match parsed(&l.target_payload) { Value::Null => json!({}), v => v },
        "is_active": l.is_active, "observed_at": l.observed_at, "created_at": l.created_at,
        "updated_at": l.updated_at,
    })
}

pub fn conversation(c: &Conversation) -> Value {
    json!({
        "local_conversation_id": c.local_conversation_id, "platform": c.platform,
        "automation_status": c.automation_status,
        "last_non_paused_automation_status": c.last_non_paused_automation_status,
        "pause_reason": c.pause_reason, "last_error": c.last_error, "execution_state": c.execution_state,
        "consecutive_failure_count": c.consecutive_failure_count,
        "repeated_message_count": c.repeated_message_count, "repeated_renewal_count": c.repeated_renewal_count,
        "title": c.title, "summary": c.summary, "last_message_id": c.last_message_id,
        "last_message_at": c.last_message_at, "cooldown_until": c.cooldown_until, "paused_at": c.paused_at,
        "created_at": c.created_at, "updated_at": c.updated_at,
        "active_link": c.active_link.as_ref().map(link),
    })
}

pub fn job(j: &Job) -> Value {
    let payload = if j.payload_kind == "json" { parsed(&Some(j.payload.clone())) } else { Value::String(j.payload.clone()) };
    // The text that will be delivered: the payload's `text` for json payloads.
    let payload_text = match (&j.payload_kind[..], &payload) {
        ("text", _) => Value::String(j.payload.clone()),
        (_, Value::Object(o)) => o.get("text").cloned().filter(Value::is_string).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    json!({
        "job_id": j.job_id, "local_conversation_id": j.local_conversation_id, "message_id": j.message_id,
        "status": j.status, "payload_kind": j.payload_kind, "payload": payload, "payload_text": payload_text,
        "target_snapshot": parsed(&j.target_snapshot), "attempt_count": j.attempt_count,
        "max_attempts": j.max_attempts, "next_attempt_at": j.next_attempt_at,
        "last_attempt_at": j.last_attempt_at, "last_error": j.last_error, "log_path": j.log_path,
        "started_at": j.started_at, "finished_at": j.finished_at, "created_at": j.created_at,
        "updated_at": j.updated_at,
    })
}

/// The list envelope of HTTP_API.md "Pagination and filters".
pub fn list(key: &str, items: Vec<Value>, filters: Value, next_offset: Option<u64>) -> Value {
    let mut v = json!({ "count": items.len(), "filters": filters, "next_offset": next_offset });
    v[key] = Value::Array(items);
    v
}
