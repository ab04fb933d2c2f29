//! Credential material a plugin sends never reaches the database file or
//! the logs (docs/BRIDGE.md `login_state`, DECISIONS.md "Credential keys
//! dropped" and "Raw frames are never logged"). The daemon runs with verbose
//! logging; afterwards the raw bytes of `conductor.db`, its `-wal`/`-shm`
//! and the daemon's stderr are searched for the secret values, both as
//! they were sent and hex-encoded (a frame dump prints payloads in hex).

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::ws::connect;
use support::{Daemon, DaemonOpts};

/// Every secret value sent below.
const SECRETS: &[&str] = &[
    "SECRET-COOKIE-123",
    "SECRET-TOKEN-456",
    "SECRET-AUTH-789",
    "SECRET-COOKIES-ARR",
    "SECRET-PASSWORD-1",
    "SECRET-BADFRAME-2",
    "SECRET-FM-COOKIE",
    "SECRET-FM-AUTH",
    "SECRET-FM-TOKEN",
    "SECRET-FM-EXTRA",
    "SECRET-FM-APIKEY",
    "SECRET-HTTP-EXTRA",
];

/// Text that must be stored: proves the search looks at the right bytes.
const VISIBLE: &str = "VISIBLE-MESSAGE-TEXT-4242";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files whose raw bytes are searched (those that exist).
fn db_files(state: &Path) -> Vec<(String, Vec<u8>)> {
    ["conductor.db", "conductor.db-wal", "conductor.db-shm"]
        .iter()
        .filter_map(|name| std::fs::read(state.join(name)).ok().map(|b| (name.to_string(), b)))
        .collect()
}

/// Panics naming every secret (plain or hex) found in `bytes`.
fn assert_no_secret(what: &str, bytes: &[u8]) {
    let mut found = Vec::new();
    for secret in SECRETS {
        if contains(bytes, secret) {
            found.push(format!("{secret} (plain)"));
        }
        if contains(bytes, &hex(secret)) || contains(bytes, &hex(secret).to_uppercase()) {
            found.push(format!("{secret} (hex)"));
        }
    }
    // For a text (the log), show where: the first few offending lines.
    let lines: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| SECRETS.iter().any(|s| l.contains(s) || l.contains(&hex(s))))
        .take(6)
        .map(|l| l.chars().take(300).collect())
        .collect();
    assert!(
        found.is_empty(),
        "{what} contains credential values: {found:?}\nfirst lines:\n{}",
        lines.join("\n")
    );
}

fn send_everything(d: &Daemon) {
    let mut c = connect(&d.ws_url(), &[]);
    c.hello("ff-secret", &["claude", "chatgpt"]);

    let ack = c.call(
        "login-1",
        json!({
            "type": "login_state", "platform": "claude", "captured_at": support::now_ms(),
            "fingerprint": "sha256:fp",
            "headers": {"cookie": "SECRET-COOKIE-123"},
            "token": "SECRET-TOKEN-456",
            "cookies": [{"name": "sid", "value": "SECRET-COOKIES-ARR"}],
            "account": {"email_hint": "a***@x.com",
                        "nested": {"authorization": "Bearer SECRET-AUTH-789", "password": "SECRET-PASSWORD-1"}},
        }),
    );
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut dropped: Vec<&str> =
        ack["dropped"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    dropped.sort();
    assert_eq!(dropped, vec!["authorization", "cookies", "headers", "password", "token"], "{ack}");

    // A login_state that fails validation after the scrub: the error must
    // not echo anything either.
    let err = c.call(
        "login-2",
        json!({"type": "login_state", "platform": "Not A Platform", "token": "SECRET-BADFRAME-2"}),
    );
    assert_eq!(err["type"], "error", "{err}");
    assert!(!err.to_string().contains("SECRET"), "{err}");

    // A final message carrying extra, unknown fields with secret values.
    let ack = c.call(
        "fm-1",
        json!({
            "type": "browser.final_message", "platform": "chatgpt", "conversation_id": "abc",
            "message_id": "msg_secret", "text": VISIBLE, "tab_id": 17,
            "cookie": "SECRET-FM-COOKIE", "authorization": "SECRET-FM-AUTH",
            "extra": {"token": "SECRET-FM-TOKEN", "session_secret": "SECRET-FM-EXTRA"},
            "x_api_key": "SECRET-FM-APIKEY",
            "route": {"path": "/c/abc", "pattern": "/c/:id", "params": {"id": "abc"}},
        }),
    );
    assert_eq!(ack["type"], "ack", "{ack}");

    // The same through the HTTP ingest route.
    let mut body = support::message_body("chatgpt", "abc", "msg_secret_http", VISIBLE);
    body["headers"] = json!({"cookie": "SECRET-HTTP-EXTRA"});
    d.post_json("/v1/messages", &body).data();

    // Nothing shown by the API either.
    let browser = d.get("/v1/browser").text();
    assert_no_secret("GET /v1/browser", browser.as_bytes());
    let v: Value = serde_json::from_str(&browser).unwrap();
    assert_eq!(v["data"]["login_states"][0]["account"], json!({"email_hint": "a***@x.com", "nested": {}}));
    for path in
        ["/v1/messages/msg_secret", "/v1/messages/msg_secret_http", "/v1/messages", "/v1/renewal/links"]
    {
        assert_no_secret(path, &d.get(path).body);
    }
    c.close();
}

fn check(log_level: &str) {
    let mut d =
        Daemon::start(DaemonOpts::new().config(support::quiet_timed_jobs()).env("RUST_LOG", log_level));
    send_everything(&d);

    // While running (the rows are in the WAL) ...
    let files = db_files(d.state_dir());
    assert!(
        files.iter().any(|(_, bytes)| contains(bytes, VISIBLE)),
        "the stored message text should be in the database files"
    );
    for (name, bytes) in &files {
        assert_no_secret(name, bytes);
    }
    // ... and after a clean stop (checkpointed into conductor.db).
    let status = d.stop();
    assert!(status.success(), "{status}");
    let files = db_files(d.state_dir());
    assert!(files.iter().any(|(_, bytes)| contains(bytes, VISIBLE)));
    for (name, bytes) in &files {
        assert_no_secret(name, bytes);
    }

    let log = d.stderr_text();
    // The log really was verbose: the bridge's per-frame debug lines are there.
    assert!(log.contains("login_state"), "expected {log_level} logs of the bridge; stderr:\n{log}");
    assert!(log.contains("DEBUG"), "RUST_LOG={log_level} did not take effect");
    assert_no_secret(&format!("stderr (RUST_LOG={log_level})"), log.as_bytes());
}

#[test]
fn credentials_never_reach_the_database_or_debug_logs() {
    check("debug");
}

#[test]
fn credentials_never_reach_the_logs_even_at_trace_level() {
    check("trace");
}
