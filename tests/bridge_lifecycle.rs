//! The life of a plugin connection (docs/BRIDGE.md "Rules", docs/API.md
//! "Browser"), with real WebSocket clients against the real daemon:
//! replacement by a second connection with the same `client_id`, fail-fast of
//! pending requests on disconnect, heartbeat pings and the silent-client
//! timeout, lost clients being forgotten, login-state freshness, and the
//! `state_snapshot` push after automation changes.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bridge::{browser, client_view, hello, post_in_thread};
use support::ws::{connect, masked_frame, Event, WsClient, FRAME_TIMEOUT};
use support::{now_ms, wait_until, Daemon, DaemonOpts};

fn start(config: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config))
}

fn quiet() -> Value {
    json!({"timed_jobs": {"interval_ms": 3_600_000}})
}

/// Read deadline of the POSTs made on their own thread.
const POST_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Replacement and fail-fast
// ---------------------------------------------------------------------------

#[test]
fn a_second_connection_replaces_the_first_and_fails_its_pending_action() {
    let d = start(quiet());
    let mut first = hello(&d, "ff-rep", &["chatgpt"]);
    first.login("chatgpt");
    let first_conn = client_view(&d, "ff-rep").unwrap()["connection_id"].clone();

    let timeout_ms = 20_000u64;
    let call = post_in_thread(
        &d,
        "/v1/browser/actions",
        json!({"action": "tab_focus", "client_id": "ff-rep", "timeout_ms": timeout_ms}),
        POST_TIMEOUT,
    );
    let action = first.recv_type("action", FRAME_TIMEOUT);
    assert_eq!(action["action"], "tab_focus");

    let mut second = connect(&d.ws_url(), &[]);
    let (ack, _) = second.hello("ff-rep", &["chatgpt"]);
    assert_ne!(ack["connection_id"], first_conn);

    // The pending action fails at once with client_replaced (retryable 502).
    let (resp, elapsed) = call.join().unwrap();
    resp.error(502, "client_replaced");
    assert!(
        elapsed < Duration::from_millis(timeout_ms / 4),
        "answered after {elapsed:?}, timeout was {timeout_ms} ms"
    );
    // The old connection is closed with 4000 "replaced".
    let (code, reason) = first.expect_close(FRAME_TIMEOUT);
    assert_eq!((code, reason.as_str()), (4000, "replaced"));

    // One entry, the new connection, still with its login state.
    let view = browser(&d);
    let clients = view["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{view}");
    assert_eq!(clients[0]["connection_id"], ack["connection_id"]);
    assert_eq!(clients[0]["status"], "connected");
    assert_eq!(view["login_states"][0]["status"], "fresh", "{view}");
    second.ping();
    assert_eq!(d.get("/v1/system").data()["clients"], 1);

    // A late answer on the replaced connection's request is ignored; the
    // answer to a new action on the new connection is what counts.
    let call = post_in_thread(
        &d,
        "/v1/browser/actions",
        json!({"action": "tab_reload", "client_id": "ff-rep", "timeout_ms": 10_000}),
        POST_TIMEOUT,
    );
    let action = second.recv_type("action", FRAME_TIMEOUT);
    second.send_json(&json!({"type": "action_result", "request_id": action["request_id"],
                             "accepted": true, "completed": true, "failed": false}));
    let (resp, _) = call.join().unwrap();
    assert_eq!(resp.data()["connection_id"], ack["connection_id"]);
}

#[test]
fn replacement_fails_a_pending_relay_with_client_replaced() {
    let d = start(quiet());
    let mut first = hello(&d, "ff-rep2", &["claude"]);
    first.login("claude");
    let call = post_in_thread(
        &d,
        "/v1/browser/request",
        json!({"platform": "claude", "method": "GET", "path": "/api/x", "timeout_ms": 20_000}),
        POST_TIMEOUT,
    );
    first.recv_type("api_request", FRAME_TIMEOUT);
    let mut second = connect(&d.ws_url(), &[]);
    second.hello("ff-rep2", &["claude"]);
    let (resp, elapsed) = call.join().unwrap();
    resp.error(502, "client_replaced");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(first.expect_close(FRAME_TIMEOUT), (4000, "replaced".to_string()));
    // The failure was fed to the policy.
    let view = browser(&d);
    let t = &view["policy"]["targets"][0];
    assert_eq!(t["last_error"], "client_replaced", "{view}");
    assert_eq!(t["in_flight"], 0);
}

#[test]
fn a_pending_action_fails_fast_when_the_plugin_disconnects() {
    let d = start(quiet());
    let timeout_ms = 20_000u64;

    // A crashed plugin: the TCP connection just goes away.
    let mut c = hello(&d, "ff-crash", &["chatgpt"]);
    let call = post_in_thread(
        &d,
        "/v1/browser/actions",
        json!({"action": "tab_focus", "platform": "chatgpt", "timeout_ms": timeout_ms}),
        POST_TIMEOUT,
    );
    c.recv_type("action", FRAME_TIMEOUT);
    c.drop_connection();
    let (resp, elapsed) = call.join().unwrap();
    resp.error(502, "client_disconnected");
    assert!(
        elapsed < Duration::from_millis(timeout_ms / 4),
        "answered after {elapsed:?}, timeout was {timeout_ms} ms"
    );
    assert!(wait_until(Duration::from_secs(5), || client_view(&d, "ff-crash")
        .is_some_and(|v| v["status"] == "lost")));
    // The platform-bound action's failure reached the policy.
    let view = browser(&d);
    let t = view["policy"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["client_id"] == "ff-crash")
        .cloned()
        .expect("target");
    assert_eq!(t["last_error"], "client_disconnected", "{t}");

    // A plugin that closes cleanly: same.
    let mut c = hello(&d, "ff-close", &["gemini"]);
    let call = post_in_thread(
        &d,
        "/v1/browser/actions",
        json!({"action": "tab_focus", "client_id": "ff-close", "timeout_ms": timeout_ms}),
        POST_TIMEOUT,
    );
    c.recv_type("action", FRAME_TIMEOUT);
    c.close();
    let (resp, elapsed) = call.join().unwrap();
    resp.error(502, "client_disconnected");
    assert!(elapsed < Duration::from_millis(timeout_ms / 4), "{elapsed:?}");

    // With nobody connected for the platform: 503 no_active_client at once.
    let r = d.post_json("/v1/browser/actions", &json!({"action": "tab_focus", "platform": "chatgpt"}));
    r.error(503, "no_active_client");
}

// ---------------------------------------------------------------------------
// Heartbeat and the silent-client timeout
// ---------------------------------------------------------------------------

#[test]
fn heartbeat_pings_keep_a_reading_client_alive() {
    let d = start(json!({
        "timed_jobs": {"interval_ms": 3_600_000},
        "bridge": {"heartbeat_ms": 100, "client_timeout_ms": 1_500},
    }));
    let mut c = connect(&d.ws_url(), &[]);
    let (ack, _) = c.hello("ff-hb", &[]);
    assert_eq!(ack["heartbeat_ms"], 100);
    // Read (and so answer pings with pongs) for well over client_timeout_ms
    // (a timeout long enough that a loaded machine's stall is not silence).
    let watch = Duration::from_millis(4_000);
    let started = Instant::now();
    while started.elapsed() < watch {
        match c.recv_event(watch.saturating_sub(started.elapsed()).max(Duration::from_millis(1))) {
            Event::Timeout => {}
            Event::Json(v) => panic!("unexpected frame {v}"),
            other => panic!("the connection ended while answering pings: {other:?}"),
        }
    }
    // ~40 pings are due at 100 ms; allow for a loaded machine.
    assert!(c.pings >= 10, "only {} pings in {watch:?}", c.pings);
    assert!(c.pings <= 80, "{} pings in {watch:?}: more than one per heartbeat_ms", c.pings);
    // Pongs count as life: still connected and serving.
    c.ping();
    assert_eq!(client_view(&d, "ff-hb").unwrap()["status"], "connected");
}

/// A burst of WebSocket pings from a client that reads everything: the
/// pongs wait for room in the connection's outbox (backpressure) instead of
/// costing the client its connection (it was reset once 256 were queued).
#[test]
fn a_burst_of_websocket_pings_is_answered_not_dropped() {
    let d = start(quiet());
    let mut c = connect(&d.ws_url(), &[]);
    c.hello("ff-pings", &[]);
    let burst: Vec<u8> = (0..2000).flat_map(|i: u32| masked_frame(0x9, &i.to_be_bytes())).collect();
    c.send_raw(&burst).expect("send the burst");
    // The JSON pong comes after all 2000 WebSocket pongs: still connected.
    c.ping();
    assert_eq!(client_view(&d, "ff-pings").unwrap()["status"], "connected");
}

#[test]
fn a_stalled_client_is_closed_marked_lost_then_forgotten() {
    let (heartbeat, client_timeout, fresh) = (100i64, 400i64, 1500i64);
    let d = start(json!({
        "timed_jobs": {"interval_ms": 3_600_000},
        "bridge": {"heartbeat_ms": heartbeat, "client_timeout_ms": client_timeout, "login_fresh_ms": fresh},
    }));
    let mut c = connect(&d.ws_url(), &[]);
    c.hello("ff-dead", &["claude"]);
    c.login("claude");
    let stopped_at = now_ms();
    let stalled = c.stop_reading();

    // Closed after client_timeout_ms of silence, and shown lost.
    let mut lost_seen = None;
    assert!(
        wait_until(Duration::from_secs(5), || {
            let v = client_view(&d, "ff-dead").expect("listed while lost");
            if v["status"] == "lost" {
                lost_seen = Some((now_ms(), v));
                true
            } else {
                false
            }
        }),
        "the stalled client was never marked lost"
    );
    let (lost_at_seen, view) = lost_seen.unwrap();
    assert!(
        lost_at_seen - stopped_at >= client_timeout - 20,
        "marked lost {} ms after it went silent, before client_timeout_ms",
        lost_at_seen - stopped_at
    );
    let last_seen = view["last_seen_at"].as_i64().unwrap();
    assert!(last_seen <= stopped_at + 5, "{view}");
    let b = browser(&d);
    assert_eq!(b["login_states"][0]["status"], "lost", "{b}");
    assert_eq!(d.get("/v1/browser?status=lost").data()["login_states"].as_array().unwrap().len(), 1);
    assert_eq!(d.get("/v1/system").data()["clients"], 0);

    // Forgotten once login_fresh_ms passed since the disconnect (which came
    // at least client_timeout_ms after its last frame).
    let mut gone_at = 0;
    assert!(
        wait_until(Duration::from_millis((fresh + 5000) as u64), || {
            let present = client_view(&d, "ff-dead").is_some();
            gone_at = now_ms();
            !present
        }),
        "the lost client was never forgotten"
    );
    assert!(
        gone_at >= last_seen + client_timeout + fresh - 20,
        "forgotten {} ms after its last frame; expected at least client_timeout_ms + login_fresh_ms = {}",
        gone_at - last_seen,
        client_timeout + fresh
    );
    assert_eq!(browser(&d)["login_states"], json!([]));

    // What the stalled plugin would have read: pings, then close 1001.
    let frames = stalled.raw_frames(FRAME_TIMEOUT);
    assert!(frames.iter().any(|(op, _)| *op == 0x9), "pings were sent to the stalled client: {frames:?}");
    let (op, payload) = frames.last().expect("frames").clone();
    assert_eq!(op, 0x8, "the last frame is a close frame: {frames:?}");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    assert_eq!(code, 1001, "close code for a silent client (DECISIONS.md)");
}

// ---------------------------------------------------------------------------
// Login state freshness
// ---------------------------------------------------------------------------

fn login_status(d: &Daemon, platform: &str) -> Option<String> {
    browser(d)["login_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["platform"] == platform)
        .map(|l| l["status"].as_str().unwrap().to_string())
}

#[test]
fn login_states_go_fresh_stale_and_lost() {
    let fresh = 1000i64;
    let d = start(json!({"timed_jobs": {"interval_ms": 3_600_000}, "bridge": {"login_fresh_ms": fresh}}));
    let mut c = hello(&d, "ff-fresh", &["claude", "chatgpt"]);
    let captured = now_ms();
    let ack = c.call("l1", json!({"type": "login_state", "platform": "claude", "captured_at": captured}));
    assert_eq!(ack["type"], "ack");
    let ack = c.call(
        "l2",
        json!({"type": "login_state", "platform": "chatgpt", "captured_at": captured - 5 * fresh}),
    );
    assert_eq!(ack["type"], "ack");

    assert_eq!(login_status(&d, "claude").as_deref(), Some("fresh"));
    assert_eq!(login_status(&d, "chatgpt").as_deref(), Some("stale"));
    let only = |status: &str| -> Vec<String> {
        d.get(&format!("/v1/browser?status={status}")).data()["login_states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["platform"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(only("fresh"), vec!["claude"]);
    assert_eq!(only("stale"), vec!["chatgpt"]);
    assert!(only("lost").is_empty());
    d.get("/v1/browser?status=old").error(400, "invalid_request");

    // fresh → stale once login_fresh_ms has passed since captured_at.
    let mut turned = 0;
    assert!(wait_until(Duration::from_millis((fresh + 5000) as u64), || {
        let stale = login_status(&d, "claude").as_deref() == Some("stale");
        turned = now_ms();
        stale
    }));
    assert!(turned > captured + fresh, "stale after only {} ms", turned - captured);
    // A new capture makes it fresh again.
    let ack = c.call("l3", json!({"type": "login_state", "platform": "claude", "captured_at": now_ms()}));
    assert_eq!(ack["type"], "ack");
    assert_eq!(login_status(&d, "claude").as_deref(), Some("fresh"));

    // Disconnected → every login state of the client is lost.
    c.close();
    assert!(wait_until(Duration::from_secs(5), || only("lost").len() == 2));
    assert!(only("fresh").is_empty() && only("stale").is_empty());

    // A reconnect with the same client_id takes the entry back, login states
    // included (DECISIONS.md), and they are no longer lost.
    let _c = hello(&d, "ff-fresh", &["claude", "chatgpt"]);
    assert_eq!(only("lost"), Vec::<String>::new());
    assert_eq!(login_status(&d, "chatgpt").as_deref(), Some("stale"));
    assert!(login_status(&d, "claude").is_some());
}

// ---------------------------------------------------------------------------
// state_snapshot pushes
// ---------------------------------------------------------------------------

/// Reads frames until a `state_snapshot` satisfying `want` arrives; returns
/// it and the time since `since`. Panics after 5 s.
fn await_snapshot(c: &mut WsClient, since: Instant, want: impl Fn(&Value) -> bool) -> (Value, Duration) {
    loop {
        let left = Duration::from_secs(5).saturating_sub(since.elapsed());
        let frame = c.recv_json(left).expect("no matching state_snapshot within 5 s");
        if frame["type"] == "state_snapshot" && want(&frame) {
            return (frame, since.elapsed());
        }
    }
}

fn conv_in<'a>(snapshot: &'a Value, lc: &str) -> Option<&'a Value> {
    snapshot["automation_conversations"].as_array().unwrap().iter().find(|c| c["local_conversation_id"] == lc)
}

#[test]
fn automation_changes_are_pushed_as_state_snapshots() {
    let d = start(quiet());
    let mut a = hello(&d, "ff-push-a", &["chatgpt"]);
    let mut b = hello(&d, "ff-push-b", &["claude"]);
    let ack = a.call(
        "m",
        json!({"type": "browser.final_message", "platform": "chatgpt", "conversation_id": "abc",
               "message_id": "msg_push", "text": "hi", "tab_id": 17}),
    );
    let lc = ack["local_conversation_id"].as_str().unwrap().to_string();
    let bound = Duration::from_secs(1);

    // → auto: both plugins get the conversation.
    let t0 = Instant::now();
    d.post_empty(&format!("/v1/renewal/conversations/{lc}/auto")).data();
    for c in [&mut a, &mut b] {
        let (snap, took) =
            await_snapshot(c, t0, |s| conv_in(s, &lc).is_some_and(|c| c["automation_status"] == "auto"));
        assert!(took < bound, "snapshot after {took:?}");
        let conv = conv_in(&snap, &lc).unwrap();
        assert_eq!(conv["platform"], "chatgpt");
        assert_eq!(conv["remote_conversation_id"], "abc");
        assert_eq!(conv["pause_reason"], Value::Null);
        assert!(conv["execution_state"].is_string(), "{conv}");
        assert_eq!(snap["system"]["automation_state"], "running");
    }

    // System pause / resume.
    let t0 = Instant::now();
    d.post_json("/v1/system/pause", &json!({"reason": "lunch"})).data();
    for c in [&mut a, &mut b] {
        let (_, took) = await_snapshot(c, t0, |s| s["system"]["automation_state"] == "paused");
        assert!(took < bound, "snapshot after {took:?}");
    }
    let t0 = Instant::now();
    d.post_empty("/v1/system/resume").data();
    let (_, took) = await_snapshot(&mut a, t0, |s| s["system"]["automation_state"] == "running");
    assert!(took < bound, "snapshot after {took:?}");

    // Conversation paused (kept, with its reason), then manual (dropped).
    let t0 = Instant::now();
    d.post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": "check"})).data();
    let (snap, took) =
        await_snapshot(&mut a, t0, |s| conv_in(s, &lc).is_some_and(|c| c["automation_status"] == "paused"));
    assert!(took < bound, "snapshot after {took:?}");
    assert_eq!(conv_in(&snap, &lc).unwrap()["pause_reason"], "check");
    let t0 = Instant::now();
    d.post_empty(&format!("/v1/renewal/conversations/{lc}/manual")).data();
    let (_, took) = await_snapshot(&mut a, t0, |s| conv_in(s, &lc).is_none());
    assert!(took < bound, "snapshot after {took:?}");

    // A client connecting now gets the current state right after hello_ack.
    let mut c = connect(&d.ws_url(), &[]);
    let (_, snap) = c.hello("ff-push-c", &[]);
    assert_eq!(snap["system"]["automation_state"], "running");
    assert!(conv_in(&snap, &lc).is_none());
}
