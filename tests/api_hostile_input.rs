//! Malformed JSON, wrong types and hostile requests on the wire: each gets
//! its documented answer (docs/API.md), nothing is stored from it, and the
//! daemon stays up afterwards. Auth, origins, media types and body limits:
//! `tests/api_security.rs`.

mod api_support;
mod support;

use std::time::Duration;

use api_support::{json_headers, message_count, small_limit_daemon};
use serde_json::{json, Value};
use support::{message_body, quiet_timed_jobs, Daemon, DaemonOpts};

// ---------------------------------------------------------------------------
// Malformed and wrong-type bodies
// ---------------------------------------------------------------------------

/// Every write route with a concrete path (ids that exist).
fn write_routes(d: &Daemon) -> Vec<String> {
    let data = d.post_json("/v1/messages", &message_body("chatgpt", "c", "m0", "hi")).data();
    let lc = data["local_conversation_id"].as_str().unwrap().to_string();
    support::seed_job(&d.db_path(), &support::JobSeed::new("job_f", "failed"));
    support::seed_job(&d.db_path(), &support::JobSeed::new("job_p", "pending"));
    vec![
        "/v1/system/pause".into(),
        "/v1/system/resume".into(),
        "/v1/system/drain".into(),
        "/v1/messages".into(),
        format!("/v1/renewal/conversations/{lc}/manual"),
        format!("/v1/renewal/conversations/{lc}/auto"),
        format!("/v1/renewal/conversations/{lc}/paused"),
        "/v1/renewal/jobs/job_f/retry".into(),
        "/v1/renewal/jobs/job_p/cancel".into(),
    ]
}

#[test]
fn malformed_json_is_400_with_a_null_field_on_every_write_route() {
    let mut d = Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()));
    let routes = write_routes(&d);
    let before = d.get("/v1/system").data();
    let deep = "[".repeat(100_000);
    let bad_bodies: Vec<&[u8]> = vec![
        b"{",
        b"{\"reason\":",
        b"not json",
        b"{'reason': 'x'}",
        b"{\"reason\": \"x\",}",
        b"\xff\xfe\x00{",
        b"{\"reason\": \"\xff\"}",
        b"{} {}",
        b"1e400",
        deep.as_bytes(),
    ];
    for path in &routes {
        for body in &bad_bodies {
            let r = d.request("POST", path, &json_headers(), Some(body));
            let e = r.error(400, "invalid_request");
            assert_eq!(
                e["details"]["field"],
                Value::Null,
                "POST {path} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(20)])
            );
        }
        // JSON that is not an object: no field to name either.
        for body in [&b"[]"[..], b"\"x\"", b"42", b"null", b"true"] {
            let r = d.request("POST", path, &json_headers(), Some(body));
            let e = r.error(400, "invalid_request");
            assert_eq!(e["details"]["field"], Value::Null, "POST {path} {}", String::from_utf8_lossy(body));
        }
    }
    // None of it changed anything.
    let after = d.get("/v1/system").data();
    assert_eq!(after["counts"], before["counts"]);
    assert_eq!(after["automation_state"], before["automation_state"]);
    assert_eq!(d.get("/v1/renewal/jobs/job_f").data()["status"], "failed");
    assert_eq!(d.get("/v1/renewal/jobs/job_p").data()["status"], "pending");
    d.assert_healthy("malformed JSON");
}

#[test]
fn wrong_types_are_400_naming_the_field() {
    let mut d = Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()));
    let data = d.post_json("/v1/messages", &message_body("chatgpt", "c", "m0", "hi")).data();
    let lc = data["local_conversation_id"].as_str().unwrap().to_string();
    let paused = format!("/v1/renewal/conversations/{lc}/paused");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/v1/system/pause", json!({"reason": 1}), "reason"),
        ("/v1/system/pause", json!({"reason": ["a"]}), "reason"),
        ("/v1/system/drain", json!({"reason": {"a": 1}}), "reason"),
        ("/v1/system/drain", json!({"reason": true}), "reason"),
        (&paused, json!({"reason": 2.5}), "reason"),
        (&paused, json!({"reason": "r".repeat(10_000)}), "reason"),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": {"a": 1}}),
            "text",
        ),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": "t", "observed_at": 18446744073709551616u128 as f64}),
            "observed_at",
        ),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": "t", "tab_id": -3}),
            "tab_id",
        ),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": "t", "route": {"path": 1}}),
            "route.path",
        ),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "x".repeat(513), "message_id": "m", "text": "t"}),
            "conversation_id",
        ),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m".repeat(513), "text": "t"}),
            "message_id",
        ),
        (
            "/v1/messages",
            json!({"platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": "t", "client_id": "c".repeat(129)}),
            "client_id",
        ),
    ];
    for (path, body, field) in cases {
        let e = d.post_json(path, &body).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field, "POST {path}");
        assert!(e["message"].as_str().unwrap().contains(field.split('.').next_back().unwrap()), "{e}");
    }
    let system = d.get("/v1/system").data();
    assert_eq!(system["automation_state"], "running");
    assert_eq!(system["counts"]["messages"], 1);
    assert_eq!(d.get(&format!("/v1/renewal/conversations/{lc}")).data()["automation_status"], "manual");
    d.assert_healthy("wrong types");
}

#[test]
fn odd_but_valid_text_is_stored_exactly() {
    let d = Daemon::start(DaemonOpts::new());
    let text =
        "nul \u{0} tab \t emoji 🦀 rtl \u{202e} bom \u{feff} <script>alert(1)</script> ../../etc/passwd";
    d.post_json("/v1/messages", &message_body("chatgpt", "c", "odd", text)).data();
    assert_eq!(d.get("/v1/messages/odd").data()["raw_text"], text);
    let r = d.get("/artifact/msg/odd.txt");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.text(), text);
}

// ---------------------------------------------------------------------------
// Hostile requests on the wire
// ---------------------------------------------------------------------------

#[test]
fn hostile_requests_get_an_answer_and_the_daemon_stays_up() {
    let mut d = Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()));
    let long_header =
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let mut many_headers = String::from("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..200 {
        many_headers.push_str(&format!("X-H{i}: v\r\n"));
    }
    many_headers.push_str("\r\n");
    let long_path = format!("GET /v1/{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "p".repeat(8000));
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage line", b"GARBAGE\r\n\r\n".to_vec(), &[400]),
        ("binary noise", vec![0u8, 1, 2, 255, 254, 13, 10, 13, 10], &[400]),
        ("headers too large", long_header.into_bytes(), &[431]),
        ("too many headers", many_headers.into_bytes(), &[431]),
        (
            "content-length and chunked",
            b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "two content-lengths",
            b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x".to_vec(),
            &[400],
        ),
        ("negative content-length", b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Length: -1\r\n\r\n".to_vec(), &[400]),
        (
            "bad chunk size",
            b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_vec(),
            &[400],
        ),
        ("http/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[400, 404, 405, 505]),
        ("non-utf8 path", b"GET /v1/messages/\xff\xfe HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[400, 404]),
        ("bad escape", b"GET /v1/messages/%zz HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[404]),
        ("bad query escape", b"GET /v1/messages?limit=%ff HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[400]),
        ("long path", long_path.into_bytes(), &[404]),
        // The target's authority is the Host (RFC 9112 §3.2.2): a foreign one is refused.
        ("absolute form", b"GET http://evil.example/v1/system HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[403]),
        ("dot segments", b"GET /v1/../v1/system HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[404]),
        ("artifact traversal", b"GET /artifact/../../../../etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[404]),
        ("artifact encoded traversal", b"GET /artifact/%2e%2e/conductor.db HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), &[404]),
        ("header without colon", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nNoColonHere\r\n\r\n".to_vec(), &[400]),
        ("bare LF line ends", b"GET /healthz HTTP/1.1\nHost: localhost\n\n".to_vec(), &[200, 400]),
    ];
    for (what, bytes, statuses) in cases {
        let resp = d.raw_response(&bytes);
        let status = resp.status;
        assert!(statuses.contains(&status), "{what}: got {status}: {}", resp.text());
        if status >= 400 && resp.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
            assert_eq!(resp.json()["ok"], false, "{what}");
        }
        d.assert_healthy(what);
    }
    let resp = d.raw_response(b"GET /etc/passwd HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(resp.status, 404);
    assert!(!resp.text().contains("root:"));

    // A connection that sends nothing, and one that sends half a head, do
    // not keep the daemon from serving others.
    let silent = std::net::TcpStream::connect(d.addr).unwrap();
    let mut half = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(&mut half, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow:").unwrap();
    d.assert_healthy("slow connections");
    drop(silent);
    drop(half);
    d.assert_healthy("closed connections");
}

#[test]
fn many_concurrent_hostile_clients_do_not_take_it_down() {
    let mut d = small_limit_daemon();
    let addr = d.addr;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..10 {
                    let payloads: [&[u8]; 4] = [
                        b"GARBAGE\r\n\r\n",
                        b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n",
                        b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1\r\n\r\n{",
                        b"GET /artifact/%2e%2e/conductor.db HTTP/1.1\r\nHost: localhost\r\n\r\n",
                    ];
                    let status = support::raw_response(addr, payloads[(t + i) % 4], Duration::from_secs(8)).status;
                    assert!([400, 404, 413].contains(&status), "got {status}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    d.assert_healthy("concurrent hostile clients");
    assert_eq!(message_count(&d), 0);
}
