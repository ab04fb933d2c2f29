//! The DNS-rebinding guard (docs/API.md "Auth, origin and host"): a request
//! or WebSocket upgrade whose `Host` is not loopback, the bound address or in
//! `allowed_hosts` is refused with 403 `forbidden_host` before anything is
//! read or changed; an HTTP/1.1 request without exactly one Host is 400.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{message_body, quiet_timed_jobs, Daemon, DaemonOpts};

const SECRET_TEXT: &str = "the secret in a chat message";

fn daemon_with_message(config: serde_json::Value) -> Daemon {
    let d = Daemon::start(DaemonOpts::new().config(config));
    d.post_json("/v1/messages", &message_body("chatgpt", "c1", "m1", SECRET_TEXT)).data();
    d
}

fn get_with_host(d: &Daemon, path: &str, host: &str) -> support::Resp {
    d.raw_response(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
}

#[test]
fn a_foreign_host_reads_and_changes_nothing() {
    let d = daemon_with_message(quiet_timed_jobs());
    let port = d.addr.port();
    for host in [
        "attacker.example".to_string(),
        format!("attacker.example:{port}"),
        format!("localhost.attacker.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        format!("192.168.77.1:{port}"),
    ] {
        for path in ["/v1/messages", "/v1/messages/m1", "/artifact/msg/m1.txt", "/healthz", "/", "/v1/system"]
        {
            let r = get_with_host(&d, path, &host);
            let e = r.error(403, "forbidden_host");
            assert_eq!(e["details"]["host"], host.as_str(), "{host} {path}");
            assert!(!r.text().contains(SECRET_TEXT), "{host} {path} leaked the message");
        }
        let pause = format!(
            "POST /v1/system/pause HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        );
        d.raw_response(pause.as_bytes()).error(403, "forbidden_host");
    }
    assert_eq!(
        d.get("/v1/system").data()["automation_state"],
        "running",
        "the refused pause changed nothing"
    );
}

#[test]
fn loopback_names_and_the_bound_address_pass() {
    let d = daemon_with_message(quiet_timed_jobs());
    let port = d.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "127.0.0.1".to_string(),
        "127.1.2.3:80".to_string(),
        "localhost".to_string(),
    ] {
        let r = get_with_host(&d, "/v1/messages/m1", &host);
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.json()["data"]["raw_text"], SECRET_TEXT);
    }
}

#[test]
fn allowed_hosts_are_accepted_with_their_port_rule() {
    let d = daemon_with_message(json!({
        "allowed_hosts": ["Conductor.LAN", "box.example:8080"],
        "timed_jobs": {"interval_ms": 3600000}
    }));
    assert_eq!(get_with_host(&d, "/v1/messages", "conductor.lan:4317").status, 200);
    assert_eq!(get_with_host(&d, "/v1/messages", "CONDUCTOR.lan").status, 200);
    assert_eq!(get_with_host(&d, "/v1/messages", "box.example:8080").status, 200);
    get_with_host(&d, "/v1/messages", "box.example:8081").error(403, "forbidden_host");
    get_with_host(&d, "/v1/messages", "other.lan").error(403, "forbidden_host");
}

#[test]
fn http11_needs_exactly_one_host() {
    let d = daemon_with_message(quiet_timed_jobs());
    let missing = d.raw_response(b"GET /v1/messages HTTP/1.1\r\nConnection: close\r\n\r\n");
    missing.error(400, "invalid_request");
    assert!(!missing.text().contains(SECRET_TEXT));
    let two = d.raw_response(
        b"GET /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n",
    );
    two.error(400, "invalid_request");
    assert!(!two.text().contains(SECRET_TEXT));
    // HTTP/1.0 predates Host; no browser sends such a request.
    assert_eq!(d.raw_response(b"GET /healthz HTTP/1.0\r\n\r\n").status, 200);
}

/// Sends a WebSocket upgrade with the given Host lines and returns the
/// response's status code.
fn upgrade_status(ws: SocketAddr, host_lines: &str) -> u16 {
    let mut stream = TcpStream::connect_timeout(&ws, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let request = format!(
        "GET /ws/browser HTTP/1.1\r\n{host_lines}Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

#[test]
fn websocket_upgrades_check_the_host_too() {
    let d = Daemon::start(DaemonOpts::new().config(json!({
        "allowed_hosts": ["conductor.lan"],
        "timed_jobs": {"interval_ms": 3600000}
    })));
    let ws: SocketAddr =
        d.ws_url().trim_start_matches("ws://").trim_end_matches("/ws/browser").parse().unwrap();
    let port = ws.port();
    assert_eq!(upgrade_status(ws, &format!("Host: attacker.example:{port}\r\n")), 403);
    assert_eq!(upgrade_status(ws, "Host: 192.168.77.1\r\n"), 403);
    assert_eq!(upgrade_status(ws, "Host: 127.0.0.1\r\nHost: attacker.example\r\n"), 400);
    assert_eq!(upgrade_status(ws, &format!("Host: localhost:{port}\r\n")), 101);
    assert_eq!(upgrade_status(ws, &format!("Host: 127.0.0.1:{port}\r\n")), 101);
    assert_eq!(upgrade_status(ws, "Host: conductor.lan\r\n"), 101);
    assert!(d.stderr_text().contains("refused upgrade for host"), "the refusal is logged");
}
