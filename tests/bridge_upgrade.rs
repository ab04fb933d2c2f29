//! The plugin bridge's upgrade refusals (docs/BRIDGE.md "Connecting"),
//! with a real WebSocket client against the real daemon: a wrong path,
//! origin or token, and a full house (64 clients by default, or the
//! configured `max_ws_clients`).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::ws::{self, connect, refused_status, try_connect, WsClient, FRAME_TIMEOUT};
use support::{quiet_timed_jobs, Daemon, DaemonOpts};

fn start(config: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config))
}

fn plain() -> Daemon {
    start(quiet_timed_jobs())
}

#[test]
fn upgrade_refusals_path_origin_token() {
    let d = Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()).token("tok-123"));
    let url = d.ws_url();
    let bearer = ("Authorization", "Bearer tok-123");

    // Token: header or ?token=, wrong or missing → 401.
    assert_eq!(refused_status(&url, &[]), 401);
    assert_eq!(refused_status(&url, &[("Authorization", "Bearer nope")]), 401);
    assert_eq!(refused_status(&ws::url_with_path(&url, "/ws/browser?token=nope"), &[]), 401);
    assert_eq!(refused_status(&ws::url_with_path(&url, "/ws/browser?token="), &[]), 401);
    let mut ok = connect(&url, &[bearer]);
    ok.hello("tok-header", &[]);
    let mut ok = connect(&ws::url_with_path(&url, "/ws/browser?token=tok-123"), &[]);
    ok.hello("tok-query", &[]);
    let mut ok = connect(&ws::url_with_path(&url, "/ws/firefox?x=1&token=tok-123"), &[]);
    ok.hello("tok-query2", &[]);

    // Web origins → 403, even with the token; extension origins pass.
    for origin in ["https://evil.example", "http://localhost:3000", "null"] {
        assert_eq!(refused_status(&url, &[bearer, ("Origin", origin)]), 403, "{origin}");
    }
    for origin in ["moz-extension://abc-123", "chrome-extension://abcdef"] {
        let mut c = connect(&url, &[bearer, ("Origin", origin)]);
        c.hello("ext", &[]);
    }
    // The daemon's own origin is allowed.
    let own = d.base.clone();
    let mut c = connect(&url, &[bearer, ("Origin", own.as_str())]);
    c.hello("own-origin", &[]);

    // Unknown path → 404.
    for path in ["/", "/ws", "/ws/chrome", "/v1/system", "/ws/browser/x"] {
        assert_eq!(refused_status(&ws::url_with_path(&url, path), &[bearer]), 404, "{path}");
    }

    // Order (DECISIONS.md): 404, then 403, then 401.
    assert_eq!(refused_status(&ws::url_with_path(&url, "/nope"), &[("Origin", "https://evil.example")]), 404);
    assert_eq!(refused_status(&url, &[("Origin", "https://evil.example")]), 403);

    // The refusal body is a JSON error naming the code.
    match try_connect(&url, &[]) {
        Err(ws::ConnectError::Refused { status, body }) => {
            assert_eq!(status, 401);
            let v: Value = serde_json::from_str(&body).expect("JSON refusal body");
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
            assert!(!body.contains("tok-123"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Opens `n` introduced connections.
fn fill(d: &Daemon, n: usize, headers: &[(&str, &str)]) -> Vec<WsClient> {
    (0..n)
        .map(|i| {
            let mut c = connect(&d.ws_url(), headers);
            c.hello(&format!("fill-{i}"), &["chatgpt"]);
            c
        })
        .collect()
}

#[test]
fn sixty_four_clients_are_served_and_the_sixty_fifth_is_refused_503() {
    let d = plain(); // max_ws_clients: default 64
    let mut clients = fill(&d, 64, &[]);
    assert_eq!(d.get("/v1/system").data()["clients"], 64);
    // All 64 are served at once.
    for c in clients.iter_mut() {
        c.ping();
    }
    assert_eq!(refused_status(&d.ws_url(), &[]), 503);
    assert_eq!(refused_status(&d.ws_url(), &[]), 503);
    // The refusal order puts capacity last: a bad path is still a 404.
    assert_eq!(refused_status(&ws::url_with_path(&d.ws_url(), "/x"), &[]), 404);
    // One leaves: its place becomes free again (once its thread ended).
    clients.pop().unwrap().close();
    let mut again = None;
    assert!(
        support::wait_until(Duration::from_secs(5), || {
            match try_connect(&d.ws_url(), &[]) {
                Ok(c) => {
                    again = Some(c);
                    true
                }
                Err(e) => {
                    assert_eq!(e.status(), 503);
                    false
                }
            }
        }),
        "a freed slot should be usable again"
    );
    // (Kept in a binding: a dropped client would free its place again.)
    let mut late = again.unwrap();
    late.hello("late", &[]);
    assert_eq!(refused_status(&d.ws_url(), &[]), 503);
    late.ping();
}

#[test]
fn a_configured_max_ws_clients_is_enforced() {
    let d = Daemon::start(
        DaemonOpts::new()
            .config(json!({"timed_jobs": {"interval_ms": 3_600_000}, "limits": {"max_ws_clients": 3}}))
            .token("tok"),
    );
    let bearer = [("Authorization", "Bearer tok")];
    let mut clients = fill(&d, 3, &bearer);
    assert_eq!(refused_status(&d.ws_url(), &bearer), 503);
    // Token before capacity: without a token it is a 401, not a 503.
    assert_eq!(refused_status(&d.ws_url(), &[]), 401);
    // A place is taken at hello: connections that have not said it yet
    // hold none (they could otherwise lock every plugin out).
    clients.pop().unwrap().close();
    let mut pending = None;
    assert!(support::wait_until(Duration::from_secs(5), || {
        pending = try_connect(&d.ws_url(), &bearer).ok();
        pending.is_some()
    }));
    let mut second = connect(&d.ws_url(), &bearer);
    for c in clients.iter_mut() {
        c.ping();
    }
    // (Kept in a binding: a dropped client would free its place again.)
    let mut late = pending.unwrap();
    late.hello("late", &[]);
    assert_eq!(refused_status(&d.ws_url(), &bearer), 503);
    // The upgrade that raced it past the check is refused at its hello:
    // close 1013 (try again later), and it holds no place.
    second.send_json(&json!({"type": "hello", "client_id": "later"}));
    assert_eq!(second.expect_close(FRAME_TIMEOUT).0, 1013);
    assert_eq!(d.get("/v1/system").data()["clients"], 3);
    late.ping();
}
