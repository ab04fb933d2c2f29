//! Auth, origins, media types, body limits and hostile input: each gets its
//! documented answer (docs/API.md) and the daemon stays up afterwards.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{first_response, message_body, quiet_timed_jobs, Daemon, DaemonOpts};

const TOKEN: &str = "s3cret-Token_value";
const LIMIT: usize = 1024;

fn small_limit_daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(json!({"limits": {"max_body_bytes": LIMIT}})))
}

fn message_count(d: &Daemon) -> i64 {
    d.get("/v1/system").data()["counts"]["messages"].as_i64().unwrap()
}

/// A `POST /v1/messages` body of exactly `len` bytes.
fn body_of_len(len: usize, id: &str) -> Vec<u8> {
    let base = message_body("chatgpt", "c", id, "").to_string();
    let pad = len.checked_sub(base.len()).expect("length too small");
    let body = message_body("chatgpt", "c", id, &"x".repeat(pad)).to_string().into_bytes();
    assert_eq!(body.len(), len);
    body
}

fn json_headers() -> Vec<(&'static str, &'static str)> {
    vec![("Content-Type", "application/json")]
}

// ---------------------------------------------------------------------------
// Token
// ---------------------------------------------------------------------------

#[test]
fn token_is_required_everywhere_but_healthz() {
    let mut d = Daemon::start(DaemonOpts::new().token(TOKEN).config(quiet_timed_jobs()));
    let r = d.request("GET", "/healthz", &[], None);
    assert_eq!(r.status, 200, "healthz needs no token");

    let good = format!("Bearer {TOKEN}");
    let wrong_auth = [
        None,
        Some("Bearer wrong".to_string()),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some("Bearer ".to_string()),
        Some(TOKEN.to_string()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Token {TOKEN}")),
    ];
    let body = message_body("chatgpt", "c", "m1", "hi").to_string();
    let routes: [(&str, &str, Option<&[u8]>); 9] = [
        ("GET", "/v1/system", None),
        ("GET", "/v1/describe", None),
        ("GET", "/v1/messages", None),
        ("POST", "/v1/messages", Some(body.as_bytes())),
        ("POST", "/v1/system/pause", None),
        ("GET", "/v1/renewal/jobs", None),
        ("GET", "/artifact/msg/m1.txt", None),
        ("GET", "/v1/does-not-exist", None),
        ("DELETE", "/healthz", None),
    ];
    for (method, path, body) in routes {
        for auth in &wrong_auth {
            let mut headers = json_headers();
            if let Some(a) = auth {
                headers.push(("Authorization", a.as_str()));
            }
            let r = d.request(method, path, &headers, body);
            let e = r.error(401, "unauthorized");
            assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
            assert!(!r.text().contains(TOKEN), "401 must not echo the token");
            let _ = e;
        }
    }
    // The token in the query string is for the WebSocket only.
    d.request("GET", &format!("/v1/system?token={TOKEN}"), &[], None).error(401, "unauthorized");

    // Nothing the refused requests asked for happened.
    let headers = [("Authorization", good.as_str())];
    let system = d.request("GET", "/v1/system", &headers, None).data();
    assert_eq!(system["automation_state"], "running");
    assert_eq!(system["counts"]["messages"], 0);

    // With the token everything works (get/post_json send it).
    assert_eq!(d.get("/v1/describe").status, 200);
    d.post_json("/v1/messages", &message_body("chatgpt", "c", "m1", "hi")).data();
    assert_eq!(d.get("/artifact/msg/m1.txt").text(), "hi");
    d.get("/v1/nope").error(404, "not_found");
    assert!(!d.stderr_text().contains(TOKEN), "the token never reaches the log");
    d.assert_healthy("token checks");
}

// ---------------------------------------------------------------------------
// Origins
// ---------------------------------------------------------------------------

#[test]
fn web_origins_are_refused_extensions_and_allowed_ones_pass() {
    let mut d = Daemon::start(
        DaemonOpts::new()
            .config(json!({"allowed_origins": ["https://ok.example/", "HTTP://Dash.Example:8080"]})),
    );
    let body = message_body("chatgpt", "c", "m1", "hi").to_string();
    for origin in [
        "https://evil.example",
        "http://evil.example",
        "http://localhost:3000",
        "https://ok.example:8443",
        "https://ok.example.evil.com",
        "http://ok.example",
        "https://dash.example:8080",
    ] {
        for (method, path, body) in [
            ("GET", "/v1/system", None),
            ("GET", "/healthz", None),
            ("POST", "/v1/messages", Some(body.as_bytes())),
            ("POST", "/v1/system/pause", None),
        ] {
            let mut headers = json_headers();
            headers.push(("Origin", origin));
            let r = d.request(method, path, &headers, body);
            let e = r.error(403, "forbidden_origin");
            assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"), "{origin}");
            let _ = e;
        }
    }
    let system = d.get("/v1/system").data();
    assert_eq!(system["counts"]["messages"], 0, "a refused write wrote nothing");
    assert_eq!(system["automation_state"], "running");

    let own = d.base.clone();
    let own_upper = own.replace("http://", "HTTP://");
    // The status page opened as http://localhost:PORT/ is the same server.
    assert!(own.starts_with("http://127.0.0.1:"), "{own}");
    let own_localhost = own.replace("127.0.0.1", "localhost");
    let own_v6 = own.replace("127.0.0.1", "[::1]");
    for origin in [
        "moz-extension://x",
        "chrome-extension://x",
        "moz-extension://0a1b2c3d-1234-5678-9abc-def012345678",
        "https://ok.example",
        "http://dash.example:8080",
        own.as_str(),
        own_upper.as_str(),
        own_localhost.as_str(),
        own_v6.as_str(),
    ] {
        let r = d.request("GET", "/v1/system", &[("Origin", origin)], None);
        assert_eq!(r.status, 200, "{origin}: {}", r.text());
    }
    let r = d.request(
        "POST",
        "/v1/messages",
        &[("Origin", "moz-extension://x"), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d.assert_healthy("origin checks");
}

#[test]
fn a_web_origin_is_refused_even_with_the_token() {
    let d = Daemon::start(DaemonOpts::new().token(TOKEN));
    let auth = format!("Bearer {TOKEN}");
    let r =
        d.request("GET", "/v1/system", &[("Authorization", &auth), ("Origin", "https://evil.example")], None);
    r.error(403, "forbidden_origin");
    let r = d.request(
        "GET",
        "/v1/system",
        &[("Authorization", &auth), ("Origin", "chrome-extension://abc")],
        None,
    );
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------
// Media type
// ---------------------------------------------------------------------------

#[test]
fn writes_with_a_body_must_be_json() {
    let mut d = Daemon::start(DaemonOpts::new());
    let body = message_body("chatgpt", "c", "m1", "hi").to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("multipart/form-data; boundary=x"),
        Some(""),
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| vec![("Content-Type", c)]).unwrap_or_default();
        let r = d.request("POST", "/v1/messages", &headers, Some(body.as_bytes()));
        r.error(415, "unsupported_media_type");
        let r = d.request("POST", "/v1/system/pause", &headers, Some(b"{\"reason\":\"x\"}"));
        r.error(415, "unsupported_media_type");
    }
    assert_eq!(message_count(&d), 0);
    assert_eq!(d.get("/v1/system").data()["automation_state"], "running");
    for ct in ["application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=UTF-8"] {
        let id = format!("m-{}", ct.len());
        let body = message_body("chatgpt", "c", &id, "hi").to_string();
        let r = d.request("POST", "/v1/messages", &[("Content-Type", ct)], Some(body.as_bytes()));
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
    }
    // No body: no media type needed (`curl -X POST .../pause`).
    let r = d.request("POST", "/v1/system/pause", &[], None);
    assert_eq!(r.status, 200);
    let r = d.request("POST", "/v1/system/resume", &[("Content-Type", "text/plain")], Some(b""));
    assert_eq!(r.status, 200, "an empty body needs no media type");
    d.assert_healthy("media types");
}

// ---------------------------------------------------------------------------
// Body size
// ---------------------------------------------------------------------------

#[test]
fn bodies_over_the_limit_get_413() {
    let mut d = small_limit_daemon();
    // At the limit: accepted.
    let r = d.request("POST", "/v1/messages", &json_headers(), Some(&body_of_len(LIMIT, "at-limit")));
    assert_eq!(r.status, 200, "{}", r.text());
    // One byte over: refused, nothing stored.
    let r = d.request("POST", "/v1/messages", &json_headers(), Some(&body_of_len(LIMIT + 1, "over")));
    let e = r.error(413, "payload_too_large");
    assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    assert_eq!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("close"));
    let _ = e;
    d.get("/v1/messages/over").error(404, "not_found");
    d.assert_healthy("a body one byte over");

    // Much bigger: the same.
    let big = body_of_len(200_000, "big");
    d.request("POST", "/v1/messages", &json_headers(), Some(&big)).error(413, "payload_too_large");
    d.assert_healthy("a 200 KB body");

    // Too large on a route that takes no body, and on an unknown route.
    d.request("POST", "/v1/system/pause", &json_headers(), Some(&big)).error(413, "payload_too_large");
    d.request("POST", "/v1/nope", &json_headers(), Some(&big)).error(413, "payload_too_large");
    assert_eq!(d.get("/v1/system").data()["automation_state"], "running");

    // Chunked, over the limit once decoded.
    let mut req = b"POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b' '; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = first_response(&d.raw(&req));
    resp.error(413, "payload_too_large");
    assert_eq!(message_count(&d), 1);
    d.assert_healthy("a chunked body over the limit");
}

#[test]
fn a_huge_content_length_is_refused_without_waiting_for_the_body() {
    let mut d = small_limit_daemon();
    for len in ["1025", "1000000000000", "18446744073709551615"] {
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
        );
        let started = Instant::now();
        // Only the head is sent; the answer must come anyway.
        let bytes = support::raw(d.addr, head.as_bytes(), Duration::from_secs(8));
        let took = started.elapsed();
        assert!(!bytes.is_empty(), "no answer to Content-Length {len} within 8 s");
        let resp = first_response(&bytes);
        resp.error(413, "payload_too_large");
        assert!(took < Duration::from_secs(5), "answer took {took:?}");
        d.assert_healthy(&format!("Content-Length {len}"));
    }
    // The same with Expect: 100-continue: refused before any 100 Continue.
    let head = "POST /v1/messages HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n";
    let bytes = support::raw(d.addr, head.as_bytes(), Duration::from_secs(8));
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    d.assert_healthy("Expect: 100-continue with a huge body");
}

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
