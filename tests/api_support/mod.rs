//! Helpers shared by the HTTP API route tests (`tests/api_routes.rs`,
//! `tests/api_messages.rs`, `tests/api_ingest_effects.rs`,
//! `tests/api_renewal.rs`, `tests/api_security.rs`,
//! `tests/api_hostile_input.rs`): a daemon with quiet timed jobs or a small
//! body limit, the documented field lists of the API objects (docs/API.md),
//! and the checks every JSON answer passes. Built on `tests/support`; a
//! test file declares both modules:
//! ```ignore
//! mod api_support;
//! mod support;
//! ```

#![allow(dead_code)]

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::support::{enc, quiet_timed_jobs, Daemon, DaemonOpts, Resp};

pub const JSON_TYPE: &str = "application/json; charset=utf-8";

pub fn daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()))
}

/// The body limit of [`small_limit_daemon`].
pub const LIMIT: usize = 1024;

/// A daemon that takes request bodies of at most [`LIMIT`] bytes.
pub fn small_limit_daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(json!({"limits": {"max_body_bytes": LIMIT}})))
}

/// How many messages the daemon has stored.
pub fn message_count(d: &Daemon) -> i64 {
    d.get("/v1/system").data()["counts"]["messages"].as_i64().unwrap()
}

pub fn json_headers() -> Vec<(&'static str, &'static str)> {
    vec![("Content-Type", "application/json")]
}

pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

/// The object has exactly these keys (documented fields, never omitted).
pub fn assert_keys(v: &Value, expected: &[&str]) {
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(keys(v), want, "fields of {v}");
}

pub const MESSAGE_KEYS: &[&str] = &[
    "message_id",
    "platform",
    "conversation_id",
    "role",
    "summary",
    "page_url",
    "page_title",
    "tab_id",
    "client_id",
    "organization_id",
    "observed_at",
    "created_at",
    "artifact_url",
];
pub const CONVERSATION_KEYS: &[&str] = &[
    "local_conversation_id",
    "platform",
    "automation_status",
    "last_non_paused_automation_status",
    "pause_reason",
    "last_error",
    "execution_state",
    "consecutive_failure_count",
    "repeated_message_count",
    "repeated_renewal_count",
    "title",
    "summary",
    "last_message_id",
    "last_message_at",
    "cooldown_until",
    "paused_at",
    "created_at",
    "updated_at",
    "active_link",
];
pub const LINK_KEYS: &[&str] = &[
    "link_id",
    "local_conversation_id",
    "platform",
    "client_id",
    "remote_conversation_id",
    "page_url",
    "page_title",
    "route_path",
    "route_pattern",
    "route_params",
    "target_kind",
    "target_id",
    "target_payload",
    "is_active",
    "observed_at",
    "created_at",
    "updated_at",
];

pub fn with_text(keys: &[&'static str]) -> Vec<&'static str> {
    let mut v = keys.to_vec();
    v.push("raw_text");
    v
}

pub fn ingest(d: &Daemon, body: &Value) -> Value {
    d.post_json("/v1/messages", body).data()
}

pub fn conversation(d: &Daemon, id: &str) -> Value {
    d.get(&format!("/v1/renewal/conversations/{}", enc(id))).data()
}

pub fn assert_json_response(r: &Resp) {
    assert_eq!(r.header("content-type"), Some(JSON_TYPE), "status {} {}", r.status, r.text());
    let rid = r.header("x-request-id").expect("X-Request-Id header");
    assert_eq!(r.json()["request_id"], rid);
}

/// A final message with every optional field set.
pub fn full_message(id: &str, observed_at: i64) -> Value {
    json!({
        "platform": "chatgpt", "conversation_id": "abc", "message_id": id, "role": "assistant",
        "text": "Hello\n  world", "observed_at": observed_at,
        "page_url": "https://chatgpt.com/c/abc", "page_title": "Title", "tab_id": 17,
        "route": {"path": "/c/abc", "pattern": "/c/:conversationId", "params": {"conversationId": "abc"}},
        "organization_id": "org-1", "shell_page": false, "client_id": "firefox-main",
    })
}
