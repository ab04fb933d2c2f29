//! A plain (non-upgrade) GET of the plugin WebSocket URL is answered with
//! the verdict the upgrade would get: the same refusal with its JSON reason,
//! or 426 `upgrade_required` when an upgrade would be accepted. Browsers
//! hide a refused handshake's answer from scripts; this is how the
//! extension's popup can say "refused: unauthorized" (docs/BRIDGE.md).

mod support;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use serde_json::json;
use support::ws::connect;
use support::{raw_response, Daemon, DaemonOpts, Resp};

fn ws_addr(d: &Daemon) -> SocketAddr {
    let url = d.ws_url();
    let hostport = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

fn get(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Resp {
    let addr = ws_addr(d);
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_response(addr, req.as_bytes(), Duration::from_secs(5))
}

fn code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_plain_get_gets_the_upgrade_verdict_with_its_reason() {
    let d = Daemon::start(
        DaemonOpts::new().config(json!({"timed_jobs": {"interval_ms": 3_600_000}})).token("tok-9"),
    );
    let ext = ("Origin", "chrome-extension://nplhpeekokbpafkegojkdehpjkpkackm");

    let r = get(&d, "/ws/browser", &[ext]);
    assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"), "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    let r = get(&d, "/ws/browser", &[ext, ("Authorization", "Bearer wrong")]);
    assert_eq!((r.status, code(&r).as_str()), (401, "unauthorized"));

    let r = get(&d, "/ws/browser", &[ext, ("Authorization", "Bearer tok-9")]);
    assert_eq!((r.status, code(&r).as_str()), (426, "upgrade_required"), "{}", r.text());
    let r = get(&d, "/ws/browser?token=tok-9", &[]);
    assert_eq!(r.status, 426);

    let r = get(&d, "/ws/nope", &[("Authorization", "Bearer tok-9")]);
    assert_eq!((r.status, code(&r).as_str()), (404, "not_found"));
    let r = get(&d, "/ws/browser", &[("Origin", "https://evil.example"), ("Authorization", "Bearer tok-9")]);
    assert_eq!((r.status, code(&r).as_str()), (403, "forbidden_origin"));

    // Real WebSocket clients are unaffected.
    let mut c = connect(&d.ws_url(), &[("Authorization", "Bearer tok-9")]);
    c.hello("after-probes", &[]);
}
