//! Every route of the HTTP API: its success path and each of its error
//! statuses (docs/API.md), plus the envelope details every route shares.

mod support;

use std::collections::BTreeSet;
use std::fs;

use serde_json::{json, Value};
use support::{
    enc, exec_sql, message_body, now_ms, quiet_timed_jobs, seed_job, Daemon, DaemonOpts, JobSeed, JOB_KEYS,
};

const JSON_TYPE: &str = "application/json; charset=utf-8";

fn daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

/// The object has exactly these keys (documented fields, never omitted).
fn assert_keys(v: &Value, expected: &[&str]) {
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(keys(v), want, "fields of {v}");
}

const MESSAGE_KEYS: &[&str] = &[
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
const CONVERSATION_KEYS: &[&str] = &[
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
const LINK_KEYS: &[&str] = &[
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

fn with_text(keys: &[&'static str]) -> Vec<&'static str> {
    let mut v = keys.to_vec();
    v.push("raw_text");
    v
}

fn ingest(d: &Daemon, body: &Value) -> Value {
    d.post_json("/v1/messages", body).data()
}

fn conversation(d: &Daemon, id: &str) -> Value {
    d.get(&format!("/v1/renewal/conversations/{}", enc(id))).data()
}

fn assert_json_response(r: &support::Resp) {
    assert_eq!(r.header("content-type"), Some(JSON_TYPE), "status {} {}", r.status, r.text());
    let rid = r.header("x-request-id").expect("X-Request-Id header");
    assert_eq!(r.json()["request_id"], rid);
}

// ---------------------------------------------------------------------------
// Probe
// ---------------------------------------------------------------------------

#[test]
fn healthz_answers_ok() {
    let d = daemon();
    let r = d.get("/healthz");
    assert_json_response(&r);
    let v = r.json();
    assert_eq!(v["ok"], true);
    assert_eq!(v["data"], json!({"status": "ok"}));
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
}

/// Every route of docs/API.md: (id, method, path pattern, a concrete path).
const SPEC_ROUTES: &[(&str, &str, &str, &str)] = &[
    ("probe.health", "GET", "/healthz", "/healthz"),
    ("probe.describe", "GET", "/v1/describe", "/v1/describe"),
    ("probe.openapi", "GET", "/v1/openapi.json", "/v1/openapi.json"),
    ("probe.metrics", "GET", "/metrics", "/metrics"),
    // docs/API.md "Status page": `GET /`, described under this id.
    ("status.page", "GET", "/", "/"),
    ("system.read", "GET", "/v1/system", "/v1/system"),
    ("system.pause", "POST", "/v1/system/pause", "/v1/system/pause"),
    ("system.resume", "POST", "/v1/system/resume", "/v1/system/resume"),
    ("system.drain", "POST", "/v1/system/drain", "/v1/system/drain"),
    ("system.backup", "POST", "/v1/system/backup", "/v1/system/backup"),
    ("messages.list", "GET", "/v1/messages", "/v1/messages"),
    ("messages.read", "GET", "/v1/messages/:message_id", "/v1/messages/nope"),
    ("messages.ingest", "POST", "/v1/messages", "/v1/messages"),
    ("renewal.conversations.list", "GET", "/v1/renewal/conversations", "/v1/renewal/conversations"),
    (
        "renewal.conversations.read",
        "GET",
        "/v1/renewal/conversations/:local_conversation_id",
        "/v1/renewal/conversations/nope",
    ),
    (
        "renewal.conversations.manual",
        "POST",
        "/v1/renewal/conversations/:local_conversation_id/manual",
        "/v1/renewal/conversations/nope/manual",
    ),
    (
        "renewal.conversations.auto",
        "POST",
        "/v1/renewal/conversations/:local_conversation_id/auto",
        "/v1/renewal/conversations/nope/auto",
    ),
    (
        "renewal.conversations.paused",
        "POST",
        "/v1/renewal/conversations/:local_conversation_id/paused",
        "/v1/renewal/conversations/nope/paused",
    ),
    ("renewal.links.list", "GET", "/v1/renewal/links", "/v1/renewal/links"),
    ("renewal.jobs.list", "GET", "/v1/renewal/jobs", "/v1/renewal/jobs"),
    ("renewal.jobs.read", "GET", "/v1/renewal/jobs/:job_id", "/v1/renewal/jobs/nope"),
    ("renewal.jobs.retry", "POST", "/v1/renewal/jobs/:job_id/retry", "/v1/renewal/jobs/nope/retry"),
    ("renewal.jobs.cancel", "POST", "/v1/renewal/jobs/:job_id/cancel", "/v1/renewal/jobs/nope/cancel"),
    // docs/BAA.md "Looking at what happened".
    ("executions.list", "GET", "/v1/executions", "/v1/executions"),
    ("executions.read", "GET", "/v1/executions/:instruction_id", "/v1/executions/nope"),
    ("browser.read", "GET", "/v1/browser", "/v1/browser"),
    ("browser.actions", "POST", "/v1/browser/actions", "/v1/browser/actions"),
    ("browser.request", "POST", "/v1/browser/request", "/v1/browser/request"),
    ("timed_jobs.read", "GET", "/v1/timed-jobs", "/v1/timed-jobs"),
    ("artifact.message", "GET", "/artifact/msg/:message_id.txt", "/artifact/msg/nope.txt"),
    ("artifact.file", "GET", "/artifact/*path", "/artifact/nope.txt"),
];

/// The routes this daemon must serve already (the rest come with the bridge,
/// the ticker and the probes of later issues).
const REQUIRED_ROUTES: &[&str] = &[
    "probe.health",
    "probe.describe",
    "probe.openapi",
    "probe.metrics",
    "status.page",
    "system.read",
    "system.pause",
    "system.resume",
    "system.drain",
    "messages.list",
    "messages.read",
    "messages.ingest",
    "renewal.conversations.list",
    "renewal.conversations.read",
    "renewal.conversations.manual",
    "renewal.conversations.auto",
    "renewal.conversations.paused",
    "renewal.links.list",
    "renewal.jobs.list",
    "renewal.jobs.read",
    "renewal.jobs.retry",
    "renewal.jobs.cancel",
    "executions.list",
    "executions.read",
    "artifact.message",
    "artifact.file",
];

/// A route counts as served when its method and path reach a handler: not a
/// route-level 404 (`details.path`) and not a 405.
fn served(d: &Daemon, method: &str, path: &str) -> bool {
    let r = if method == "POST" { d.post_json(path, &json!({})) } else { d.get(path) };
    assert_has_request_id(&r);
    let route_404 = r.status == 404 && r.json()["error"]["details"].get("path").is_some();
    !(route_404 || r.status == 405)
}

fn assert_has_request_id(r: &support::Resp) {
    assert!(r.header("x-request-id").is_some(), "X-Request-Id on every response: {} {}", r.status, r.text());
}

#[test]
fn describe_lists_exactly_the_routes_served() {
    let d = daemon();
    let r = d.get("/v1/describe");
    assert_json_response(&r);
    let data = r.data();
    assert_eq!(data["name"], "baa-conductor");
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));
    let routes = data["routes"].as_array().expect("routes array");
    let mut described = BTreeSet::new();
    for route in routes {
        assert_keys(route, &["id", "kind", "method", "path", "summary"]);
        let id = route["id"].as_str().unwrap();
        assert!(described.insert(id.to_string()), "route id {id} listed twice");
        let (_, method, path, sample) = SPEC_ROUTES
            .iter()
            .find(|(sid, ..)| *sid == id)
            .unwrap_or_else(|| panic!("described route {id} is not in docs/API.md"));
        assert_eq!(route["method"], *method, "{id}");
        assert_eq!(route["path"], *path, "{id}");
        let kind = if ["/healthz", "/v1/describe", "/v1/openapi.json", "/metrics"].contains(path) {
            "probe"
        } else if *method == "POST" {
            "write"
        } else {
            "read"
        };
        assert_eq!(route["kind"], kind, "{id}");
        assert!(!route["summary"].as_str().unwrap().trim().is_empty(), "{id} has a summary");
        assert!(served(&d, method, sample), "described route {id} ({method} {sample}) is not served");
    }
    for required in REQUIRED_ROUTES {
        assert!(described.contains(*required), "{required} missing from /v1/describe");
    }
    // Conversely, a route of docs/API.md that is not described is not served.
    for (id, method, _, sample) in SPEC_ROUTES {
        if !described.contains(*id) {
            assert!(!served(&d, method, sample), "{id} ({method} {sample}) is served but not described");
        }
    }
}

// ---------------------------------------------------------------------------
// System
// ---------------------------------------------------------------------------

#[test]
fn system_read_describes_the_daemon() {
    let d = daemon();
    let before = now_ms();
    let data = d.get("/v1/system").data();
    assert_keys(
        &data,
        &[
            "node_id",
            "role",
            "version",
            "automation_state",
            "automation_reason",
            "drained",
            "started_at",
            "uptime_ms",
            "pid",
            "state_dir",
            "http_base",
            "ws_url",
            "counts",
            "clients",
        ],
    );
    assert_eq!(data["node_id"], "local");
    assert_eq!(data["role"], "primary");
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(data["automation_state"], "running");
    assert_eq!(data["automation_reason"], Value::Null);
    assert_eq!(data["drained"], false);
    assert_eq!(data["pid"], d.pid());
    assert_eq!(data["state_dir"], d.state_dir().display().to_string());
    assert_eq!(data["http_base"], d.base);
    let ws = data["ws_url"].as_str().unwrap();
    assert!(ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/ws/browser"), "{ws}");
    let started = data["started_at"].as_i64().unwrap();
    assert!(started <= before && started > before - 60_000, "started_at {started}");
    assert!(data["uptime_ms"].as_i64().unwrap() >= 0);
    assert_eq!(data["clients"], 0);
    assert_eq!(
        data["counts"],
        json!({"messages": 0, "conversations": 0, "jobs": {"pending": 0, "running": 0, "done": 0, "failed": 0}})
    );

    ingest(&d, &message_body("chatgpt", "c1", "m1", "one"));
    ingest(&d, &message_body("chatgpt", "c1", "m2", "two"));
    ingest(&d, &message_body("claude", "c2", "m3", "three"));
    for (i, status) in ["pending", "pending", "running", "done", "failed"].iter().enumerate() {
        seed_job(&d.db_path(), &JobSeed::new(&format!("job_{i}"), status));
    }
    let counts = d.get("/v1/system").data()["counts"].clone();
    assert_eq!(
        counts,
        json!({"messages": 3, "conversations": 2, "jobs": {"pending": 2, "running": 1, "done": 1, "failed": 1}})
    );
}

#[test]
fn system_pause_resume_drain_with_reasons() {
    let d = daemon();
    let r = d.post_json("/v1/system/pause", &json!({"reason": "maintenance"}));
    let data = r.data();
    assert_eq!(data["automation_state"], "paused");
    assert_eq!(data["automation_reason"], "maintenance");
    assert_eq!(data["drained"], false);
    let read = d.get("/v1/system").data();
    assert_eq!(read["automation_state"], "paused");
    assert_eq!(read["automation_reason"], "maintenance");

    // Without a reason (no body at all, like `curl -X POST`): reason null.
    let data = d.post_empty("/v1/system/pause").data();
    assert_eq!(data["automation_state"], "paused");
    assert_eq!(data["automation_reason"], Value::Null);

    let data = d.post_json("/v1/system/drain", &json!({"reason": "upgrade"})).data();
    assert_eq!(data["automation_state"], "draining");
    assert_eq!(data["automation_reason"], "upgrade");
    assert_eq!(data["drained"], true, "draining with no jobs is drained");

    // Resume clears the reason, even when one is sent.
    let data = d.post_json("/v1/system/resume", &json!({"reason": "done"})).data();
    assert_eq!(data["automation_state"], "running");
    assert_eq!(data["automation_reason"], Value::Null);
    assert_eq!(data["drained"], false);
    assert_eq!(d.get("/v1/system").data()["automation_reason"], Value::Null);

    // `{"reason": null}` is the same as no reason, and so is a blank one.
    let data = d.post_json("/v1/system/drain", &json!({"reason": null})).data();
    assert_eq!(data["automation_reason"], Value::Null);
    let data = d.post_json("/v1/system/drain", &json!({"reason": ""})).data();
    assert_eq!(data["automation_reason"], Value::Null);

    // Error statuses: wrong type, too long, not an object, malformed.
    for path in ["/v1/system/pause", "/v1/system/drain", "/v1/system/resume"] {
        let e = d.post_json(path, &json!({"reason": 5})).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], "reason", "{path}");
        let e = d.post_json(path, &json!({"reason": "x".repeat(513)})).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], "reason", "{path}");
        let e = d.post_json(path, &json!(["reason"])).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], Value::Null, "{path}");
        let r = d.request("POST", path, &[("Content-Type", "application/json")], Some(b"{\"reason\":"));
        assert_eq!(r.error(400, "invalid_request")["details"]["field"], Value::Null, "{path}");
    }
    // A refused request changed nothing.
    assert_eq!(d.get("/v1/system").data()["automation_state"], "draining");
}

#[test]
fn drained_only_while_draining_without_pending_or_running_jobs() {
    let d = daemon();
    let db = d.db_path();
    seed_job(&db, &JobSeed::new("job_done", "done"));
    seed_job(&db, &JobSeed::new("job_failed", "failed"));
    assert_eq!(
        d.post_empty("/v1/system/drain").data()["drained"],
        true,
        "done/failed jobs do not hold a drain"
    );

    seed_job(&db, &JobSeed::new("job_pending", "pending"));
    seed_job(&db, &JobSeed::new("job_running", "running"));
    let data = d.get("/v1/system").data();
    assert_eq!(data["automation_state"], "draining");
    assert_eq!(data["drained"], false);

    d.post_empty("/v1/renewal/jobs/job_pending/cancel").data();
    assert_eq!(d.get("/v1/system").data()["drained"], false, "a running job still holds the drain");

    exec_sql(&db, "UPDATE renewal_jobs SET status = 'done' WHERE job_id = 'job_running'");
    assert_eq!(d.get("/v1/system").data()["drained"], true);

    // Drained is about draining: paused or running with no jobs is not drained.
    assert_eq!(d.post_empty("/v1/system/pause").data()["drained"], false);
    assert_eq!(d.post_empty("/v1/system/resume").data()["drained"], false);
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

fn full_message(id: &str, observed_at: i64) -> Value {
    json!({
        "platform": "chatgpt", "conversation_id": "abc", "message_id": id, "role": "assistant",
        "text": "Hello\n  world", "observed_at": observed_at,
        "page_url": "https://chatgpt.com/c/abc", "page_title": "Title", "tab_id": 17,
        "route": {"path": "/c/abc", "pattern": "/c/:conversationId", "params": {"conversationId": "abc"}},
        "organization_id": "org-1", "shell_page": false, "client_id": "firefox-main",
    })
}

#[test]
fn messages_ingest_read_and_list() {
    let d = daemon();
    let before = now_ms();
    let r = d.post_json("/v1/messages", &full_message("msg_1", 1_711_800_000_000));
    assert_json_response(&r);
    let data = r.data();
    assert_keys(&data, &["message", "local_conversation_id", "link_id", "duplicate"]);
    assert_eq!(data["duplicate"], false);
    let lc = data["local_conversation_id"].as_str().unwrap();
    assert!(lc.starts_with("lc_"), "{lc}");
    assert!(data["link_id"].is_string());
    let m = &data["message"];
    assert_keys(m, &with_text(MESSAGE_KEYS));
    assert_eq!(m["message_id"], "msg_1");
    assert_eq!(m["platform"], "chatgpt");
    assert_eq!(m["conversation_id"], "abc");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["raw_text"], "Hello\n  world");
    assert_eq!(m["summary"], "Hello world");
    assert_eq!(m["page_url"], "https://chatgpt.com/c/abc");
    assert_eq!(m["page_title"], "Title");
    assert_eq!(m["tab_id"], 17);
    assert_eq!(m["client_id"], "firefox-main");
    assert_eq!(m["organization_id"], "org-1");
    assert_eq!(m["observed_at"], 1_711_800_000_000i64);
    let created = m["created_at"].as_i64().unwrap();
    assert!(created >= before && created <= now_ms());
    assert_eq!(m["artifact_url"], format!("{}/artifact/msg/msg_1.txt", d.base));

    // Read: the same object, raw_text included.
    let read = d.get("/v1/messages/msg_1").data();
    assert_eq!(&read, m);

    // List: the same object without raw_text.
    let list = d.get("/v1/messages").data();
    assert_eq!(list["count"], 1);
    let item = &list["messages"][0];
    assert_keys(item, MESSAGE_KEYS);
    let mut expected = m.clone();
    expected.as_object_mut().unwrap().remove("raw_text");
    assert_eq!(item, &expected);

    // A minimal message: defaults and explicit nulls.
    let data = ingest(&d, &message_body("claude", "c9", "msg_2", "short"));
    let m = &data["message"];
    assert_eq!(m["role"], "assistant");
    let observed = m["observed_at"].as_i64().unwrap();
    assert!(observed >= before && observed <= now_ms(), "observed_at defaults to now");
    for field in ["page_url", "page_title", "tab_id", "client_id", "organization_id"] {
        assert_eq!(m.get(field), Some(&Value::Null), "{field} present as null");
    }
    // An empty text is fine for a non-assistant message; raw_text is "" then.
    let mut user = message_body("claude", "c9", "msg_3", "");
    user["role"] = json!("user");
    let data = ingest(&d, &user);
    assert_eq!(data["message"]["raw_text"], "");
    assert_eq!(d.get("/v1/messages/msg_3").data()["raw_text"], "");
}

#[test]
fn messages_read_unknown_is_404() {
    let d = daemon();
    let e = d.get("/v1/messages/nope").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "message");
    assert_eq!(e["details"]["resource_id"], "nope");
    let e = d.get("/v1/messages/a%20b").error(404, "not_found");
    assert_eq!(e["details"]["resource_id"], "a b", "the id is reported decoded");
}

#[test]
fn duplicate_ingest_is_a_no_op() {
    let d = daemon();
    let first = ingest(&d, &full_message("msg_1", 1000));
    let mut again = full_message("msg_1", 2000);
    again["text"] = json!("a different text");
    again["tab_id"] = json!(99);
    let second = ingest(&d, &again);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["local_conversation_id"], first["local_conversation_id"]);
    assert_eq!(second["link_id"], first["link_id"]);
    assert_eq!(second["message"], first["message"], "the stored message is unchanged");
    assert_eq!(d.get("/v1/messages/msg_1").data()["raw_text"], "Hello\n  world");
    let system = d.get("/v1/system").data();
    assert_eq!(system["counts"]["messages"], 1);
    assert_eq!(system["counts"]["conversations"], 1);
    let links = d.get("/v1/renewal/links").data();
    assert_eq!(links["count"], 1, "no link for the duplicate's tab: {links}");
    let conv = conversation(&d, first["local_conversation_id"].as_str().unwrap());
    assert_eq!(conv["repeated_message_count"], 1, "a duplicate does not count as a repeat");
}

#[test]
fn ingest_validation_names_the_field() {
    let d = daemon();
    let base = message_body("chatgpt", "c", "m", "hi");
    let cases: Vec<(&str, Value)> = vec![
        ("platform", json!("Bad Platform")),
        ("platform", json!("x".repeat(33))),
        ("platform", json!(7)),
        ("platform", Value::Null),
        ("conversation_id", json!("")),
        ("conversation_id", json!(["c"])),
        ("message_id", Value::Null),
        ("message_id", json!(12)),
        ("text", json!(1)),
        ("text", json!("")),
        ("text", Value::Null),
        ("role", json!("Assistant")),
        ("role", json!(true)),
        ("observed_at", json!("now")),
        ("observed_at", json!(-1)),
        ("observed_at", json!(1.5)),
        // Past the end of tomorrow (UTC), so at least a day ahead: it would
        // stay the conversation's newest message for good and stop its renewal.
        ("observed_at", json!(now_ms() + 49 * 3600 * 1000)),
        ("observed_at", json!(i64::MAX)),
        ("tab_id", json!(0)),
        ("tab_id", json!("17")),
        ("shell_page", json!("yes")),
        ("client_id", json!("has space")),
        ("client_id", json!(5)),
        ("page_url", json!(5)),
        ("page_title", json!({})),
        ("organization_id", json!(1)),
        ("route", json!("x")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let r = d.post_json("/v1/messages", &body);
        assert_json_response(&r);
        let e = r.error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field, "{field} = {value}: {e}");
    }
    let mut body = base.clone();
    body["route"] = json!({"params": []});
    let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "route.params");
    body["route"] = json!({"path": 5});
    let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "route.path");
    assert!(e["message"].as_str().unwrap().contains("\"route.path\""), "{e}");
    // Whitespace is not empty: stored as the page showed it.
    let mut body = base.clone();
    body["text"] = json!("  \n ");
    body["message_id"] = json!("blank");
    assert_eq!(d.post_json("/v1/messages", &body).status, 200);
    assert_eq!(d.get("/v1/messages/blank").data()["raw_text"], "  \n ");
    // A plugin's clock a little ahead is fine.
    let mut body = base.clone();
    body["observed_at"] = json!(now_ms() + 3600 * 1000);
    body["message_id"] = json!("ahead");
    assert_eq!(d.post_json("/v1/messages", &body).status, 200);
    // Missing required fields.
    for field in ["platform", "conversation_id", "message_id", "text"] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(field);
        let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field);
    }
    // Not an object / not JSON: no field to name.
    for bad in [&b"[1,2]"[..], b"\"text\"", b"{\"platform\":", b"nul"] {
        let r = d.request("POST", "/v1/messages", &[("Content-Type", "application/json")], Some(bad));
        assert_eq!(r.error(400, "invalid_request")["details"]["field"], Value::Null);
    }
    // An empty body is an empty object: the first required field is missing.
    let e = d.post_empty("/v1/messages").error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "platform");
    // Nothing was stored by any of these (only the blank one and the one
    // an hour ahead).
    assert_eq!(d.get("/v1/system").data()["counts"]["messages"], 2);
}

/// `JSON.stringify` of text cut in the middle of an emoji writes half a
/// surrogate pair as a lone `\ud83d` escape. The message is kept, with
/// U+FFFD in place of the half, over HTTP and over the WebSocket alike.
#[test]
fn half_an_emoji_does_not_lose_the_message() {
    let d = daemon();
    let body = br#"{"platform":"chatgpt","conversation_id":"c","message_id":"emoji","text":"Here you go \ud83d","page_title":"\ude00 ok \ud83d\ude00"}"#;
    let r = d.request("POST", "/v1/messages", &[("Content-Type", "application/json")], Some(&body[..]));
    assert_eq!(r.status, 200, "{}", r.text());
    let m = d.get("/v1/messages/emoji").data();
    assert_eq!(m["raw_text"], "Here you go \u{fffd}");
    assert_eq!(m["page_title"], "\u{fffd} ok 😀");

    let mut c = support::bridge::hello(&d, "ff-emoji", &["chatgpt"]);
    c.send_text(r#"{"type":"browser.final_message","id":"s1","platform":"chatgpt","conversation_id":"c","message_id":"emoji-ws","text":"cut \ud83d"}"#);
    let ack = c.recv_type("ack", support::ws::FRAME_TIMEOUT);
    assert_eq!((ack["id"].as_str(), ack["duplicate"].as_bool()), (Some("s1"), Some(false)), "{ack}");
    assert_eq!(d.get("/v1/messages/emoji-ws").data()["raw_text"], "cut \u{fffd}");
}

#[test]
fn message_ids_with_any_characters_round_trip() {
    let d = daemon();
    let id = "a b/c?d#e%f.txt+ü";
    let data = ingest(&d, &message_body("chatgpt", "conv/1 ?", id, "Grüße\nline two"));
    assert_eq!(data["message"]["message_id"], id);
    let read = d.get(&format!("/v1/messages/{}", enc(id))).data();
    assert_eq!(read["message_id"], id);
    assert_eq!(read["conversation_id"], "conv/1 ?");
    // The artifact URL is a working link to the raw text.
    let url = read["artifact_url"].as_str().unwrap();
    let path = url.strip_prefix(&d.base).expect("artifact_url on the daemon's base");
    let r = d.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.text(), "Grüße\nline two");
    // Filters take such values too.
    let list = d.get(&format!("/v1/messages?conversation_id={}", enc("conv/1 ?"))).data();
    assert_eq!(list["count"], 1);
}

#[test]
fn artifact_url_uses_public_base_url() {
    let d = Daemon::start(DaemonOpts::new().config(json!({"public_base_url": "https://baa.example/base/"})));
    let data = ingest(&d, &message_body("chatgpt", "c", "m1", "x"));
    assert_eq!(data["message"]["artifact_url"], "https://baa.example/base/artifact/msg/m1.txt");
}

// ---------------------------------------------------------------------------
// Ingest effects on conversations and links
// ---------------------------------------------------------------------------

#[test]
fn ingest_finds_or_creates_the_local_conversation() {
    let d = Daemon::start(DaemonOpts::new().config(json!({"renewal": {"summary_limit": 12}})));
    let mut m1 = message_body("chatgpt", "abc", "m1", "first   answer\nthat is long");
    m1["observed_at"] = json!(1000);
    m1["page_title"] = json!("Old title");
    let a = ingest(&d, &m1);
    let lc = a["local_conversation_id"].as_str().unwrap().to_string();
    assert_eq!(a["message"]["summary"], "first answe…", "summary cut at summary_limit");

    let conv = conversation(&d, &lc);
    assert_keys(&conv, CONVERSATION_KEYS);
    assert_eq!(conv["local_conversation_id"], lc);
    assert_eq!(conv["platform"], "chatgpt");
    assert_eq!(conv["automation_status"], "manual", "new conversations start manual");
    assert_eq!(conv["last_non_paused_automation_status"], "manual");
    assert_eq!(conv["execution_state"], "idle");
    for null in ["pause_reason", "last_error", "cooldown_until", "paused_at"] {
        assert_eq!(conv.get(null), Some(&Value::Null), "{null}");
    }
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["repeated_message_count"], 1);
    assert_eq!(conv["repeated_renewal_count"], 0);
    assert_eq!(conv["title"], "Old title");
    assert_eq!(conv["summary"], "first answe…");
    assert_eq!(conv["last_message_id"], "m1");
    assert_eq!(conv["last_message_at"], 1000);
    assert!(conv["created_at"].as_i64().unwrap() <= conv["updated_at"].as_i64().unwrap());

    // Same platform conversation: same local conversation, updated.
    let mut m2 = message_body("chatgpt", "abc", "m2", "second");
    m2["observed_at"] = json!(2000);
    m2["page_title"] = json!("New title");
    let b = ingest(&d, &m2);
    assert_eq!(b["local_conversation_id"], lc.as_str());
    let conv2 = conversation(&d, &lc);
    assert_eq!(conv2["title"], "New title");
    assert_eq!(conv2["summary"], "second");
    assert_eq!(conv2["last_message_id"], "m2");
    assert_eq!(conv2["last_message_at"], 2000);
    assert_eq!(conv2["created_at"], conv["created_at"], "an upsert never changes created_at");

    // An older message arriving late does not become the last message.
    let mut m0 = message_body("chatgpt", "abc", "m0", "older");
    m0["observed_at"] = json!(500);
    ingest(&d, &m0);
    let conv3 = conversation(&d, &lc);
    assert_eq!(conv3["last_message_id"], "m2");
    assert_eq!(conv3["last_message_at"], 2000);
    assert_eq!(conv3["summary"], "second");

    // Another conversation id, or the same id on another platform: new ones.
    let c = ingest(&d, &message_body("chatgpt", "other", "m3", "x"));
    let e = ingest(&d, &message_body("claude", "abc", "m4", "x"));
    let ids: BTreeSet<String> =
        [&a, &c, &e].iter().map(|v| v["local_conversation_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(d.get("/v1/system").data()["counts"]["conversations"], 3);
}

#[test]
fn a_second_tab_makes_the_first_link_inactive() {
    let d = daemon();
    let mut m1 = full_message("m1", 1000);
    m1["tab_id"] = json!(1);
    let a = ingest(&d, &m1);
    let lc = a["local_conversation_id"].as_str().unwrap().to_string();
    let link1 = a["link_id"].as_str().unwrap().to_string();

    let conv = conversation(&d, &lc);
    let link = &conv["active_link"];
    assert_keys(link, LINK_KEYS);
    assert_eq!(link["link_id"], link1.as_str());
    assert_eq!(link["local_conversation_id"], lc.as_str());
    assert_eq!(link["platform"], "chatgpt");
    assert_eq!(link["client_id"], "firefox-main");
    assert_eq!(link["remote_conversation_id"], "abc");
    assert_eq!(link["page_url"], "https://chatgpt.com/c/abc");
    assert_eq!(link["page_title"], "Title");
    assert_eq!(link["route_path"], "/c/abc");
    assert_eq!(link["route_pattern"], "/c/:conversationId");
    assert_eq!(link["route_params"], json!({"conversationId": "abc"}));
    assert_eq!(link["target_kind"], "browser.proxy_delivery");
    assert_eq!(link["target_id"], "tab:1");
    assert_eq!(
        link["target_payload"],
        json!({"clientId": "firefox-main", "conversationId": "abc", "pageUrl": "https://chatgpt.com/c/abc",
               "tabId": 1, "organizationId": "org-1", "shellPage": false})
    );
    assert_eq!(link["is_active"], true);
    assert_eq!(link["observed_at"], 1000);

    // The same conversation seen in tab 2: the new link is the active one.
    let mut m2 = full_message("m2", 2000);
    m2["tab_id"] = json!(2);
    let b = ingest(&d, &m2);
    assert_eq!(b["local_conversation_id"], lc.as_str());
    let link2 = b["link_id"].as_str().unwrap().to_string();
    assert_ne!(link1, link2);
    let list = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}")).data();
    assert_eq!(list["count"], 2);
    let active: Vec<&Value> =
        list["links"].as_array().unwrap().iter().filter(|l| l["is_active"] == true).collect();
    assert_eq!(active.len(), 1, "exactly one active link: {list}");
    assert_eq!(active[0]["link_id"], link2.as_str());
    assert_eq!(conversation(&d, &lc)["active_link"]["link_id"], link2.as_str());

    // Back in tab 1: its link is reused and active again.
    let mut m3 = full_message("m3", 3000);
    m3["tab_id"] = json!(1);
    let c = ingest(&d, &m3);
    assert_eq!(c["link_id"], link1.as_str());
    let active = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}&active=true")).data();
    assert_eq!(active["count"], 1);
    assert_eq!(active["links"][0]["link_id"], link1.as_str());
    assert_eq!(active["links"][0]["observed_at"], 3000);
    let inactive = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}&active=false")).data();
    assert_eq!(inactive["count"], 1);
    assert_eq!(inactive["links"][0]["link_id"], link2.as_str());

    // Without a tab: a link with no route.
    let d2 = daemon();
    let data = ingest(&d2, &message_body("chatgpt", "x", "m1", "hi"));
    let conv = conversation(&d2, data["local_conversation_id"].as_str().unwrap());
    let link = &conv["active_link"];
    assert_eq!(link["target_kind"], Value::Null);
    assert_eq!(link["target_id"], Value::Null);
    assert_eq!(link["client_id"], Value::Null);
    assert_eq!(link["is_active"], true);
    assert_eq!(link["route_params"], json!({}));
    assert_eq!(link["target_payload"], json!({}));
}

#[test]
fn repeated_message_pauses_an_auto_conversation_at_three() {
    let d = daemon();
    let first = ingest(&d, &message_body("chatgpt", "loop", "m0", "same"));
    let lc = first["local_conversation_id"].as_str().unwrap().to_string();
    // While manual, repeats are counted but nothing is paused.
    ingest(&d, &message_body("chatgpt", "loop", "m1", "same"));
    ingest(&d, &message_body("chatgpt", "loop", "m2", "same"));
    let conv = conversation(&d, &lc);
    assert_eq!(conv["repeated_message_count"], 3);
    assert_eq!(conv["automation_status"], "manual");

    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/auto")).data();
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["repeated_message_count"], 0, "switching to auto resets the counter");

    let count_after = |id: &str, text: &str| {
        ingest(&d, &message_body("chatgpt", "loop", id, text));
        let c = conversation(&d, &lc);
        (c["repeated_message_count"].as_i64().unwrap(), c["automation_status"].as_str().unwrap().to_string())
    };
    assert_eq!(count_after("m3", "alpha"), (1, "auto".into()));
    assert_eq!(count_after("m4", "alpha"), (2, "auto".into()));
    assert_eq!(count_after("m5", "beta"), (1, "auto".into()), "a different text starts over");
    assert_eq!(count_after("m6", "beta"), (2, "auto".into()));
    let before = now_ms();
    // Whitespace alone does not make a text different.
    assert_eq!(count_after("m7", "  beta\n"), (3, "paused".into()));
    let conv = conversation(&d, &lc);
    assert_eq!(conv["pause_reason"], "repeated_message");
    assert_eq!(conv["last_non_paused_automation_status"], "auto");
    let paused_at = conv["paused_at"].as_i64().unwrap();
    assert!(paused_at >= before && paused_at <= now_ms());
    let paused = d.get("/v1/renewal/conversations?status=paused").data();
    assert_eq!(paused["count"], 1);
}

// ---------------------------------------------------------------------------
// Renewal conversations and links
// ---------------------------------------------------------------------------

#[test]
fn conversation_switches_manual_auto_paused() {
    let d = daemon();
    let a = ingest(&d, &message_body("chatgpt", "c", "m1", "same"));
    ingest(&d, &message_body("chatgpt", "c", "m2", "same"));
    let lc = a["local_conversation_id"].as_str().unwrap().to_string();
    let db = d.db_path();
    exec_sql(
        &db,
        &format!("UPDATE local_conversations SET consecutive_failure_count = 2, repeated_renewal_count = 2 WHERE local_conversation_id = '{lc}'"),
    );

    // paused without a reason: "user".
    let before = now_ms();
    let r = d.post_empty(&format!("/v1/renewal/conversations/{lc}/paused"));
    assert_json_response(&r);
    let conv = r.data();
    assert_keys(&conv, CONVERSATION_KEYS);
    assert_eq!(conv["automation_status"], "paused");
    assert_eq!(conv["pause_reason"], "user");
    assert_eq!(conv["last_non_paused_automation_status"], "manual");
    assert!(conv["paused_at"].as_i64().unwrap() >= before);
    assert_eq!(conv["consecutive_failure_count"], 2, "pausing keeps the counters");
    assert_eq!(conversation(&d, &lc), conv, "the answer is the stored conversation");

    // paused with a reason.
    let conv =
        d.post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": "lunch"})).data();
    assert_eq!(conv["pause_reason"], "lunch");
    // A blank reason is no reason: the default again.
    let conv = d.post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": " "})).data();
    assert_eq!(conv["pause_reason"], "user");

    // auto: the pause and every counter are cleared.
    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/auto")).data();
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["last_non_paused_automation_status"], "auto");
    assert_eq!(conv["pause_reason"], Value::Null);
    assert_eq!(conv["paused_at"], Value::Null);
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["repeated_message_count"], 0);
    assert_eq!(conv["repeated_renewal_count"], 0);

    // paused remembers auto as the last non-paused status.
    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/paused")).data();
    assert_eq!(conv["last_non_paused_automation_status"], "auto");

    // manual: the same reset.
    exec_sql(&db, &format!("UPDATE local_conversations SET consecutive_failure_count = 3 WHERE local_conversation_id = '{lc}'"));
    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/manual")).data();
    assert_eq!(conv["automation_status"], "manual");
    assert_eq!(conv["last_non_paused_automation_status"], "manual");
    assert_eq!(conv["pause_reason"], Value::Null);
    assert_eq!(conv["paused_at"], Value::Null);
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert!(conv["updated_at"].as_i64().unwrap() >= before);

    // Errors: a reason of the wrong type, unknown ids.
    let e = d
        .post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": 1}))
        .error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "reason");
    for action in ["", "/manual", "/auto", "/paused"] {
        let path = format!("/v1/renewal/conversations/lc_missing{action}");
        let r = if action.is_empty() { d.get(&path) } else { d.post_empty(&path) };
        let e = r.error(404, "not_found");
        assert_eq!(e["details"]["resource"], "local_conversation", "{path}");
        assert_eq!(e["details"]["resource_id"], "lc_missing", "{path}");
    }
}

#[test]
fn conversations_list_shows_active_links() {
    let d = daemon();
    let a = ingest(&d, &full_message("m1", 1000));
    let data = d.get("/v1/renewal/conversations").data();
    assert_keys(&data, &["count", "filters", "next_offset", "conversations"]);
    assert_eq!(data["count"], 1);
    let conv = &data["conversations"][0];
    assert_keys(conv, CONVERSATION_KEYS);
    assert_eq!(conv["local_conversation_id"], a["local_conversation_id"]);
    assert_eq!(conv["active_link"]["link_id"], a["link_id"]);
}

#[test]
fn links_list_renders_links() {
    let d = daemon();
    let a = ingest(&d, &full_message("m1", 1000));
    let data = d.get("/v1/renewal/links").data();
    assert_keys(&data, &["count", "filters", "next_offset", "links"]);
    assert_eq!(data["count"], 1);
    let link = &data["links"][0];
    assert_keys(link, LINK_KEYS);
    assert_eq!(link["link_id"], a["link_id"]);
    assert_eq!(link, &conversation(&d, a["local_conversation_id"].as_str().unwrap())["active_link"]);
}

// ---------------------------------------------------------------------------
// Renewal jobs
// ---------------------------------------------------------------------------

#[test]
fn job_read_shows_every_field_with_explicit_nulls() {
    let d = daemon();
    let mut job = JobSeed::new("job_1", "pending");
    job.target_snapshot = Some(json!({"platform": "chatgpt", "linkId": "link_1"}).to_string());
    seed_job(&d.db_path(), &job);
    let r = d.get("/v1/renewal/jobs/job_1");
    assert_json_response(&r);
    let v = r.json();
    let data = &v["data"];
    assert_keys(data, JOB_KEYS);
    assert_eq!(data["job_id"], "job_1");
    assert_eq!(data["local_conversation_id"], "lc_seed");
    assert_eq!(data["message_id"], "msg_job_1");
    assert_eq!(data["status"], "pending");
    assert_eq!(data["payload_kind"], "json");
    assert_eq!(data["payload"]["kind"], "renewal.message", "payload parsed: {data}");
    assert_eq!(data["payload_text"], "renew job_1");
    assert_eq!(data["target_snapshot"], json!({"platform": "chatgpt", "linkId": "link_1"}));
    assert_eq!(data["attempt_count"], 0);
    assert_eq!(data["max_attempts"], 3);
    assert_eq!(data["next_attempt_at"], job.next_attempt_at.unwrap());
    // `jq .data.finished_at` works on a fresh job: present, null.
    for null in ["finished_at", "started_at", "last_attempt_at", "last_error", "log_path"] {
        assert_eq!(data.get(null), Some(&Value::Null), "{null}");
    }

    // A text payload is its own text; an unparsable json payload is shown as text.
    let mut text_job = JobSeed::new("job_text", "pending");
    text_job.payload_kind = "text".into();
    text_job.payload = "plain words".into();
    seed_job(&d.db_path(), &text_job);
    let data = d.get("/v1/renewal/jobs/job_text").data();
    assert_eq!(data["payload"], "plain words");
    assert_eq!(data["payload_text"], "plain words");
    assert_eq!(data["target_snapshot"], Value::Null);
    let mut broken = JobSeed::new("job_broken", "pending");
    broken.payload = "{not json".into();
    seed_job(&d.db_path(), &broken);
    let data = d.get("/v1/renewal/jobs/job_broken").data();
    assert_eq!(data["payload"], "{not json");
    assert_eq!(data["payload_text"], Value::Null);

    let e = d.get("/v1/renewal/jobs/nope").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "renewal_job");
    assert_eq!(e["details"]["resource_id"], "nope");
}

#[test]
fn job_retry_moves_failed_to_pending() {
    let d = daemon();
    let db = d.db_path();
    let t = now_ms() - 10_000;
    let mut exhausted = JobSeed::new("job_exhausted", "failed");
    exhausted.attempt_count = 3;
    exhausted.max_attempts = 3;
    exhausted.last_error = Some("delivery_timeout".into());
    exhausted.started_at = Some(t);
    exhausted.last_attempt_at = Some(t);
    exhausted.finished_at = Some(t + 1);
    seed_job(&db, &exhausted);
    let mut terminal = JobSeed::new("job_early", "failed");
    terminal.attempt_count = 1;
    terminal.max_attempts = 3;
    terminal.last_error = Some("invalid_payload".into());
    terminal.finished_at = Some(t);
    seed_job(&db, &terminal);

    let before = now_ms();
    let r = d.post_empty("/v1/renewal/jobs/job_exhausted/retry");
    assert_json_response(&r);
    let job = r.data();
    let after = now_ms();
    assert_keys(&job, JOB_KEYS);
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 3, "attempts are kept");
    assert_eq!(job["max_attempts"], 4, "raised by one when exhausted");
    let due = job["next_attempt_at"].as_i64().unwrap();
    assert!(due >= before && due <= after, "due now: {due} not in {before}..={after}");
    assert_eq!(job["finished_at"], Value::Null);
    assert_eq!(d.get("/v1/renewal/jobs/job_exhausted").data(), job, "the answer is the stored job");

    let job = d.post_empty("/v1/renewal/jobs/job_early/retry").data();
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 1);
    assert_eq!(job["max_attempts"], 3, "not exhausted: unchanged");

    // Retry of anything but failed: 409 invalid_state naming the state.
    seed_job(&db, &JobSeed::new("job_running", "running"));
    seed_job(&db, &JobSeed::new("job_done", "done"));
    for (id, state) in [("job_exhausted", "pending"), ("job_running", "running"), ("job_done", "done")] {
        let r = d.post_empty(&format!("/v1/renewal/jobs/{id}/retry"));
        assert_json_response(&r);
        let e = r.error(409, "invalid_state");
        assert_eq!(e["details"]["resource"], "renewal_job");
        assert_eq!(e["details"]["resource_id"], id);
        assert_eq!(e["details"]["state"], state);
        assert_eq!(d.get(&format!("/v1/renewal/jobs/{id}")).data()["status"], state, "unchanged");
    }
    let e = d.post_empty("/v1/renewal/jobs/nope/retry").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "renewal_job");
    assert_eq!(e["details"]["resource_id"], "nope");
}

#[test]
fn job_cancel_moves_pending_to_failed() {
    let d = daemon();
    let db = d.db_path();
    seed_job(&db, &JobSeed::new("job_p", "pending"));
    let before = now_ms();
    let job = d.post_empty("/v1/renewal/jobs/job_p/cancel").data();
    assert_eq!(job["status"], "failed");
    assert_eq!(job["last_error"], "cancelled");
    assert_eq!(job["next_attempt_at"], Value::Null);
    let finished = job["finished_at"].as_i64().unwrap();
    assert!(finished >= before && finished <= now_ms());
    assert_eq!(d.get("/v1/renewal/jobs/job_p").data(), job);

    // A cancelled job can be retried.
    assert_eq!(d.post_empty("/v1/renewal/jobs/job_p/retry").data()["status"], "pending");

    seed_job(&db, &JobSeed::new("job_r", "running"));
    seed_job(&db, &JobSeed::new("job_d", "done"));
    seed_job(&db, &JobSeed::new("job_f", "failed"));
    for (id, state) in [("job_r", "running"), ("job_d", "done"), ("job_f", "failed")] {
        let e = d.post_empty(&format!("/v1/renewal/jobs/{id}/cancel")).error(409, "invalid_state");
        assert_eq!(e["details"]["resource"], "renewal_job");
        assert_eq!(e["details"]["resource_id"], id);
        assert_eq!(e["details"]["state"], state);
    }
    let e = d.post_empty("/v1/renewal/jobs/nope/cancel").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "renewal_job");
}

#[test]
fn jobs_list_renders_jobs() {
    let d = daemon();
    seed_job(&d.db_path(), &JobSeed::new("job_1", "pending"));
    let data = d.get("/v1/renewal/jobs").data();
    assert_keys(&data, &["count", "filters", "next_offset", "jobs"]);
    assert_eq!(data["count"], 1);
    assert_eq!(data["jobs"][0], d.get("/v1/renewal/jobs/job_1").data());
}

// ---------------------------------------------------------------------------
// Routing errors
// ---------------------------------------------------------------------------

#[test]
fn unknown_route_is_404_with_path() {
    let d = daemon();
    for (method, target, path) in [
        ("GET", "/v1/nope", "/v1/nope"),
        ("GET", "/v1/nope?x=1", "/v1/nope"),
        ("POST", "/v2/messages", "/v2/messages"),
        ("GET", "/v1/messages/", "/v1/messages/"),
        ("GET", "/v1/renewal/jobs/j/retry/more", "/v1/renewal/jobs/j/retry/more"),
        ("DELETE", "/nothing/here", "/nothing/here"),
        ("GET", "/artifact/", "/artifact/"),
    ] {
        let r = d.request(method, target, &[], None);
        assert_json_response(&r);
        let e = r.error(404, "not_found");
        assert_eq!(e["details"]["path"], path, "{method} {target}");
        assert!(e["details"].get("resource").is_none());
    }
}

#[test]
fn known_path_with_another_method_is_405_with_allow() {
    let d = daemon();
    for (method, path, allow) in [
        ("DELETE", "/v1/messages", "GET, HEAD, POST"),
        ("PUT", "/healthz", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("GET", "/v1/system/pause", "POST"),
        ("PATCH", "/v1/system", "GET, HEAD"),
        ("GET", "/v1/renewal/jobs/j1/retry", "POST"),
        ("POST", "/v1/renewal/jobs/j1", "GET, HEAD"),
        ("DELETE", "/v1/renewal/conversations/lc_1", "GET, HEAD"),
        ("POST", "/artifact/msg/m1.txt", "GET, HEAD"),
    ] {
        let r = d.request(method, path, &[], None);
        assert_json_response(&r);
        r.error(405, "method_not_allowed");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
}

// ---------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------

#[test]
fn artifact_message_is_the_raw_text() {
    let d = daemon();
    let text = "Line one\n\n  indented ✓\r\nend";
    ingest(&d, &message_body("chatgpt", "c", "m.1", text));
    let r = d.get("/artifact/msg/m.1.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("x-request-id").is_some());
    // Text taken from a web page is never active content on our origin.
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-security-policy"), Some("default-src 'none'; sandbox"));
    assert_eq!(r.text(), text);

    let r = d.get("/artifact/msg/nope.txt");
    assert_json_response(&r);
    let e = r.error(404, "not_found");
    assert_eq!(e["details"]["resource"], "message");
    assert_eq!(e["details"]["resource_id"], "nope");
}

#[test]
fn artifact_files_are_served_only_from_the_artifacts_dir() {
    let d = daemon();
    let state = d.state_dir().to_path_buf();
    let artifacts = state.join("artifacts");
    fs::create_dir_all(artifacts.join("sub")).unwrap();
    fs::write(artifacts.join("sub/report.txt"), "report body").unwrap();
    fs::write(artifacts.join("data.json"), "{\"a\":1}").unwrap();
    fs::write(state.join("secret.txt"), "TOP-SECRET").unwrap();
    fs::create_dir_all(d.temp_dir().join("outside")).unwrap();
    fs::write(d.temp_dir().join("outside/x.txt"), "TOP-SECRET").unwrap();

    let r = d.get("/artifact/sub/report.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "report body");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = d.get("/artifact/data.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "{\"a\":1}");
    let r = d.get("/artifact/sub/%72eport.txt");
    assert_eq!(r.status, 200, "percent-encoded names are decoded");

    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink("../secret.txt", artifacts.join("up.txt")).unwrap();
        symlink(&state, artifacts.join("statedir")).unwrap();
        symlink(d.temp_dir().join("outside"), artifacts.join("out")).unwrap();
        symlink("/etc/hostname", artifacts.join("abs.txt")).unwrap();
        symlink("sub/report.txt", artifacts.join("inside.txt")).unwrap();
        let r = d.get("/artifact/inside.txt");
        assert_eq!(r.status, 200, "a link that stays inside is fine");
        assert_eq!(r.text(), "report body");
    }

    let secret_abs = state.join("secret.txt").display().to_string();
    let escapes = [
        "/artifact/../secret.txt".to_string(),
        "/artifact/sub/../../secret.txt".to_string(),
        "/artifact/%2e%2e/secret.txt".to_string(),
        "/artifact/%2E%2E/%2E%2E/outside/x.txt".to_string(),
        "/artifact/%2e%2e%2fsecret.txt".to_string(),
        "/artifact/..%2Fsecret.txt".to_string(),
        "/artifact/sub/..%2f..%2fsecret.txt".to_string(),
        "/artifact/..%5csecret.txt".to_string(),
        "/artifact/.%2e/secret.txt".to_string(),
        "/artifact//etc/passwd".to_string(),
        "/artifact/%2Fetc%2Fpasswd".to_string(),
        format!("/artifact/{}", enc(&secret_abs)),
        format!("/artifact/{}", secret_abs.trim_start_matches('/')),
        "/artifact/./sub/report.txt".to_string(),
        "/artifact/sub".to_string(),
        "/artifact/missing.txt".to_string(),
        "/artifact/up.txt".to_string(),
        "/artifact/statedir/secret.txt".to_string(),
        "/artifact/statedir/conductor.db".to_string(),
        "/artifact/out/x.txt".to_string(),
        "/artifact/abs.txt".to_string(),
        "/artifact/sub%00/report.txt".to_string(),
    ];
    for path in &escapes {
        let r = d.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_json_response(&r);
        let e = r.error(404, "not_found");
        assert!(!r.text().contains("TOP-SECRET"), "{path}");
        if let Some(resource) = e["details"].get("resource") {
            assert_eq!(resource, "artifact", "{path}");
            assert!(e["details"]["resource_id"].is_string(), "{path}");
        }
    }
    let e = d.get("/artifact/missing.txt").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "artifact");
    assert_eq!(e["details"]["resource_id"], "missing.txt");
}

// ---------------------------------------------------------------------------
// Envelope
// ---------------------------------------------------------------------------

#[test]
fn request_id_is_echoed_or_generated() {
    let d = daemon();
    for good in ["abc", "my-req.1:a_B", &"x".repeat(128)] {
        for path in ["/healthz", "/v1/system", "/v1/nope"] {
            let r = d.request("GET", path, &[("X-Request-Id", good)], None);
            assert_eq!(r.header("x-request-id"), Some(good), "{path}");
            assert_eq!(r.json()["request_id"], good, "{path}");
        }
    }
    let r = d.request("GET", "/artifact/msg/nope.txt", &[("x-request-id", "raw-1")], None);
    assert_eq!(r.header("x-request-id"), Some("raw-1"));
    let long = "y".repeat(129);
    for bad in ["has space", "a/b", "ü", long.as_str(), "a\"b", ""] {
        let r = d.request("GET", "/healthz", &[("X-Request-Id", bad)], None);
        let header = r.header("x-request-id").unwrap().to_string();
        assert_ne!(header, bad);
        assert!(header.starts_with("req_"), "{header}");
        assert_eq!(r.json()["request_id"], header.as_str());
    }
    let a = d.get("/healthz").json()["request_id"].clone();
    let b = d.get("/healthz").json()["request_id"].clone();
    assert_ne!(a, b, "generated ids differ");
}

#[test]
fn every_json_answer_has_the_envelope_and_content_type() {
    let d = daemon();
    seed_job(&d.db_path(), &JobSeed::new("job_1", "pending"));
    let cases: Vec<(&str, &str, Option<&[u8]>, u16)> = vec![
        ("GET", "/healthz", None, 200),
        ("GET", "/v1/describe", None, 200),
        ("GET", "/v1/messages?limit=0", None, 400),
        ("POST", "/v1/messages", Some(b"{"), 400),
        ("GET", "/v1/nope", None, 404),
        ("GET", "/v1/messages/nope", None, 404),
        ("DELETE", "/v1/system", None, 405),
        ("POST", "/v1/renewal/jobs/job_1/retry", None, 409),
        ("POST", "/v1/messages", Some(b"x=1"), 415),
    ];
    for (method, path, body, status) in cases {
        let ct = if status == 415 { "application/x-www-form-urlencoded" } else { "application/json" };
        let headers: Vec<(&str, &str)> = if body.is_some() { vec![("Content-Type", ct)] } else { vec![] };
        let r = d.request(method, path, &headers, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_json_response(&r);
        let v = r.json();
        if status == 200 {
            assert_keys(&v, &["ok", "request_id", "data"]);
        } else {
            assert_keys(&v, &["ok", "request_id", "error"]);
            assert_keys(&v["error"], &["code", "message", "details"]);
        }
    }
}
