//! Every route of the HTTP API is described and served (docs/API.md), the
//! probes, the system routes, routing errors, and the envelope details every
//! route shares. Messages and artifacts: `tests/api_messages.rs`; renewal
//! conversations, links and jobs: `tests/api_renewal.rs`.

use std::collections::BTreeSet;

mod api_support;
mod support;

use api_support::*;
use serde_json::{json, Value};
use support::{exec_sql, message_body, now_ms, seed_job, Daemon, JobSeed};

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
            "instruction_blocks",
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
    // The configuration's defaults (docs/CONFIG.md): off, and the read-only tools.
    assert_eq!(
        data["instruction_blocks"],
        json!({"enabled": false, "allowed_tools": ["describe", "status", "files.read"]})
    );
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
