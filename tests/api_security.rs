//! Auth, origins, media types and body limits: each gets its documented
//! answer (docs/API.md). Malformed bodies and hostile requests:
//! `tests/api_hostile_input.rs`.

mod api_support;
mod support;

use std::time::{Duration, Instant};

use api_support::{json_headers, message_count, small_limit_daemon, LIMIT};
use serde_json::json;
use support::{first_response, message_body, quiet_timed_jobs, Daemon, DaemonOpts};

const TOKEN: &str = "s3cret-Token_value";

/// A `POST /v1/messages` body of exactly `len` bytes.
fn body_of_len(len: usize, id: &str) -> Vec<u8> {
    let base = message_body("chatgpt", "c", id, "").to_string();
    let pad = len.checked_sub(base.len()).expect("length too small");
    let body = message_body("chatgpt", "c", id, &"x".repeat(pad)).to_string().into_bytes();
    assert_eq!(body.len(), len);
    body
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
