//! The raw relay `POST /v1/browser/request` (docs/API.md "Raw relay",
//! docs/BRIDGE.md `api_request` and its answers) through real HTTP and a
//! real plugin WebSocket: plain and streamed round trips, upstream error
//! statuses as data, sequence checking, plugin stream errors, and every
//! failure before the first byte (no client, no login state, timeout,
//! disconnect).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::sse::{Sse, SseEvent};
use support::ws::Plugin;
use support::{now_ms, Daemon, DaemonOpts, Resp};

const T: Duration = Duration::from_secs(5);

fn start() -> Daemon {
    Daemon::start(DaemonOpts::new().config(support::quiet_timed_jobs()))
}

/// A plugin for `claude` with a login state, answering nothing by itself.
fn plugin(d: &Daemon, client_id: &str) -> Plugin {
    Plugin::start(&d.ws_url(), client_id, &["claude"], &["claude"], None)
}

fn relay_body(extra: Value) -> Value {
    let mut body =
        json!({"platform": "claude", "method": "GET", "path": "/api/organizations", "timeout_ms": 10_000});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn relay_in_thread(d: &Daemon, body: Value) -> std::thread::JoinHandle<(Resp, Duration)> {
    let addr = d.addr;
    std::thread::spawn(move || {
        let started = Instant::now();
        let body = body.to_string();
        let resp = support::try_request(
            addr,
            "POST",
            "/v1/browser/request",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
            Duration::from_secs(60),
        )
        .expect("relay POST");
        (resp, started.elapsed())
    })
}

fn open_stream(d: &Daemon, extra: Value) -> Sse {
    let mut body = relay_body(extra);
    body["stream"] = json!(true);
    Sse::send(d.addr, "/v1/browser/request", &[], &body)
}

fn target(d: &Daemon, client_id: &str) -> Value {
    let view = d.get("/v1/browser").data();
    view["policy"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["client_id"] == client_id && t["platform"] == "claude")
        .cloned()
        .unwrap_or_else(|| panic!("no policy target for {client_id}: {view}"))
}

fn event(e: &SseEvent) -> (&str, &Value) {
    (e.event.as_str(), &e.data)
}

#[test]
fn plain_round_trip() {
    let d = start();
    let p = plugin(&d, "ff-plain");
    let t0 = now_ms();
    let call = relay_in_thread(
        &d,
        relay_body(json!({"method": "POST", "path": "/api/chat?x=1", "headers": {"x-test": "1"},
                          "body": {"q": [1, 2]}, "timeout_ms": 8000})),
    );
    let req = p.next_request(T);
    assert_eq!(req["type"], "api_request");
    let rid = req["request_id"].as_str().unwrap().to_string();
    assert!(rid.starts_with("ar_"), "{req}");
    assert_eq!(req["platform"], "claude");
    assert_eq!(req["method"], "POST");
    assert_eq!(req["path"], "/api/chat?x=1");
    assert_eq!(req["headers"], json!({"x-test": "1"}));
    assert_eq!(req["body"], json!({"q": [1, 2]}));
    assert_eq!(req["stream"], false);
    let left = req["timeout_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 8000, "api_request timeout_ms {left}");
    p.send_one(json!({"type": "api_response", "request_id": rid, "status": 201,
                      "headers": {"x-up": "u"}, "body": {"ok": true}}));
    let (resp, _) = call.join().unwrap();
    let t1 = now_ms();
    assert_eq!(resp.status, 200);
    let data = resp.data();
    assert_eq!(data["status"], 201);
    assert_eq!(data["headers"], json!({"x-up": "u"}));
    assert_eq!(data["body"], json!({"ok": true}));
    assert_eq!(data["client_id"], "ff-plain");
    assert_eq!(data["platform"], "claude");
    assert_eq!(data["request_id"], rid.as_str());
    let admission = &data["admission"];
    let admitted_at = admission["admitted_at"].as_i64().unwrap();
    assert!((t0..=t1).contains(&admitted_at), "{admission}");
    assert_eq!(admission["rate_limit_delay_ms"], 0);
    assert_eq!(admission["jitter_ms"], 0);

    let t = target(&d, "ff-plain");
    assert_eq!(t["circuit_state"], "closed");
    assert_eq!(t["last_activity_reason"], "complete_success");
    assert_eq!(t["last_error"], Value::Null);
    assert!(t["last_success_at"].as_i64().unwrap() >= admitted_at);
    assert_eq!(t["in_flight"], 0);
    let platforms = d.get("/v1/browser?platform=claude").data()["policy"]["platforms"].clone();
    assert_eq!(platforms[0]["recent_dispatch_count"], 1, "{platforms}");

    // Upstream 4xx other than 429 is still a success for the policy.
    let call = relay_in_thread(&d, relay_body(json!({})));
    let req = p.next_request(T);
    p.send_one(json!({"type": "api_response", "request_id": req["request_id"], "status": 404, "headers": {}, "body": null}));
    let (resp, _) = call.join().unwrap();
    assert_eq!(resp.data()["status"], 404);
    assert_eq!(target(&d, "ff-plain")["consecutive_failures"], 0);
}

#[test]
fn streamed_round_trip_passes_each_event_on_as_it_arrives() {
    let d = start();
    let p = plugin(&d, "ff-stream");
    let mut sse = open_stream(&d, json!({}));
    let req = p.next_request(T);
    assert_eq!(req["stream"], true);
    let rid = req["request_id"].clone();

    // One event at a time: the next is sent only after the HTTP client got
    // the previous one, so each must have been written as it arrived.
    let events = [json!("first chunk"), json!({"delta": "second"}), json!(3)];
    for (i, data) in events.iter().enumerate() {
        let seq = i as i64 + 1;
        p.send_one(json!({"type": "stream_event", "request_id": rid, "seq": seq, "data": data}));
        let e = sse.next_event(T).unwrap_or_else(|| panic!("event {seq} did not arrive"));
        if seq == 1 {
            assert_eq!(sse.status, 200);
            let ct = sse.header("content-type").unwrap();
            assert!(ct.starts_with("text/event-stream"), "{ct}");
            assert!(sse.header("transfer-encoding").unwrap().contains("chunked"));
        }
        assert_eq!(event(&e), ("stream_event", &json!({"seq": seq, "data": data})));
    }
    p.send_one(json!({"type": "stream_end", "request_id": rid, "seq": 4, "status": 200}));
    let e = sse.next_event(T).expect("stream_end");
    assert_eq!(event(&e), ("stream_end", &json!({"seq": 4, "status": 200})));
    assert!(sse.next_event(T).is_none(), "nothing after stream_end");
    assert!(sse.finished, "the chunked body was terminated");

    let t = target(&d, "ff-stream");
    assert_eq!(t["last_activity_reason"], "complete_success", "{t}");
    assert_eq!(t["in_flight"], 0);
}

#[test]
fn upstream_error_status_is_data_and_a_policy_failure() {
    let d = start();
    let p = plugin(&d, "ff-500");
    let call = relay_in_thread(&d, relay_body(json!({})));
    let req = p.next_request(T);
    p.send_one(json!({"type": "api_response", "request_id": req["request_id"], "status": 500,
                      "headers": {}, "body": {"error": "boom"}}));
    let (resp, _) = call.join().unwrap();
    assert_eq!(resp.status, 200, "the upstream status is data: {}", resp.text());
    let data = resp.data();
    assert_eq!(data["status"], 500);
    assert_eq!(data["body"], json!({"error": "boom"}));
    let t = target(&d, "ff-500");
    assert_eq!(t["last_error"], "upstream_500", "{t}");
    assert_eq!(t["consecutive_failures"], 1);
    assert!(t["last_failure_at"].is_i64());
    assert!(t["backoff_until"].as_i64().unwrap() > now_ms() - 1000);

    // A streamed answer that ends with an upstream 503 counts as well.
    let d = start();
    let p = plugin(&d, "ff-503");
    let mut sse = open_stream(&d, json!({}));
    let req = p.next_request(T);
    p.send(vec![
        json!({"type": "stream_event", "request_id": req["request_id"], "seq": 1, "data": "x"}),
        json!({"type": "stream_end", "request_id": req["request_id"], "seq": 2, "status": 503}),
    ]);
    let events = sse.rest(T);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(event(&events[1]), ("stream_end", &json!({"seq": 2, "status": 503})));
    support::wait_until(T, || target(&d, "ff-503")["in_flight"] == 0);
    assert_eq!(target(&d, "ff-503")["last_error"], "upstream_503");
}

#[test]
fn a_sequence_gap_ends_the_stream_with_sequence_gap() {
    let d = start();
    let p = plugin(&d, "ff-gap");
    let mut sse = open_stream(&d, json!({}));
    let req = p.next_request(T);
    let rid = req["request_id"].clone();
    p.send(vec![
        json!({"type": "stream_event", "request_id": rid, "seq": 1, "data": "a"}),
        json!({"type": "stream_event", "request_id": rid, "seq": 3, "data": "c"}),
        json!({"type": "stream_end", "request_id": rid, "seq": 4, "status": 200}),
    ]);
    let events = sse.rest(T);
    assert!(sse.finished);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(event(&events[0]), ("stream_event", &json!({"seq": 1, "data": "a"})));
    assert_eq!(events[1].event, "stream_error");
    assert_eq!(events[1].data["code"], "sequence_gap");
    assert_eq!(events[1].data["partial"], json!({"seq": 1, "received": 1}));
    assert!(events[1].data["message"].is_string());
    support::wait_until(T, || target(&d, "ff-gap")["in_flight"] == 0);
    assert_eq!(target(&d, "ff-gap")["last_error"], "sequence_gap");

    // A repeated seq is a gap too. (Each case on its own client: the
    // failure above put the first target in backoff.)
    let p = plugin(&d, "ff-gap2");
    let mut sse = open_stream(&d, json!({"client_id": "ff-gap2"}));
    let req = p.next_request(T);
    let rid = req["request_id"].clone();
    p.send(vec![
        json!({"type": "stream_event", "request_id": rid, "seq": 1, "data": "a"}),
        json!({"type": "stream_event", "request_id": rid, "seq": 2, "data": "b"}),
        json!({"type": "stream_event", "request_id": rid, "seq": 2, "data": "b"}),
    ]);
    let events = sse.rest(T);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2].data["code"], "sequence_gap");
    assert_eq!(events[2].data["partial"], json!({"seq": 2, "received": 2}));

    // A first frame that does not start at 1.
    let p = plugin(&d, "ff-gap3");
    let mut sse = open_stream(&d, json!({"client_id": "ff-gap3"}));
    let req = p.next_request(T);
    p.send_one(json!({"type": "stream_event", "request_id": req["request_id"], "seq": 2, "data": "b"}));
    let events = sse.rest(T);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["code"], "sequence_gap");
    assert_eq!(events[0].data["partial"], json!({"seq": 0, "received": 0}));
}

#[test]
fn a_plugin_stream_error_is_passed_on_with_partial_counts() {
    let d = start();
    let p = plugin(&d, "ff-serr");
    let mut sse = open_stream(&d, json!({}));
    let req = p.next_request(T);
    let rid = req["request_id"].clone();
    p.send(vec![
        json!({"type": "stream_event", "request_id": rid, "seq": 1, "data": "a"}),
        json!({"type": "stream_event", "request_id": rid, "seq": 2, "data": "b"}),
        json!({"type": "stream_error", "request_id": rid, "seq": 3, "code": "upstream_reset", "message": "connection reset"}),
    ]);
    let events = sse.rest(T);
    assert!(sse.finished);
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2].event, "stream_error");
    assert_eq!(
        events[2].data,
        json!({"code": "upstream_reset", "message": "connection reset", "partial": {"seq": 2, "received": 2}})
    );
    support::wait_until(T, || target(&d, "ff-serr")["in_flight"] == 0);
    assert_eq!(target(&d, "ff-serr")["last_error"], "upstream_reset");

    // A stream that fails before any event (another client: the first one
    // is backing off after its failure).
    let p = plugin(&d, "ff-serr2");
    let mut sse = open_stream(&d, json!({"client_id": "ff-serr2"}));
    let req = p.next_request(T);
    p.send_one(json!({"type": "stream_error", "request_id": req["request_id"], "seq": 1, "code": "upstream_reset", "message": "m"}));
    let events = sse.rest(T);
    assert_eq!(sse.status, 200);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["partial"], json!({"seq": 0, "received": 0}));
}

#[test]
fn a_plugin_that_drops_mid_stream_ends_it_with_client_disconnected() {
    let d = start();
    let p = plugin(&d, "ff-drop");
    let mut sse = open_stream(&d, json!({"timeout_ms": 30_000}));
    let req = p.next_request(T);
    let rid = req["request_id"].clone();
    p.send(vec![
        json!({"type": "stream_event", "request_id": rid, "seq": 1, "data": "a"}),
        json!({"type": "stream_event", "request_id": rid, "seq": 2, "data": "b"}),
    ]);
    assert_eq!(sse.next_event(T).unwrap().data["seq"], 1);
    assert_eq!(sse.next_event(T).unwrap().data["seq"], 2);
    let dropped = Instant::now();
    p.drop_connection();
    let e = sse.next_event(T).expect("stream_error after the disconnect");
    assert!(dropped.elapsed() < Duration::from_secs(5), "not fail-fast: {:?}", dropped.elapsed());
    assert_eq!(e.event, "stream_error");
    assert_eq!(e.data["code"], "client_disconnected");
    assert_eq!(e.data["partial"], json!({"seq": 2, "received": 2}));
    assert!(sse.next_event(T).is_none());
    assert!(sse.finished);
    support::wait_until(T, || target(&d, "ff-drop")["in_flight"] == 0);
    assert_eq!(target(&d, "ff-drop")["last_error"], "client_disconnected");
}

#[test]
fn a_plugin_that_drops_before_answering_gives_502_at_once() {
    let d = start();
    let p = plugin(&d, "ff-drop2");
    let call = relay_in_thread(&d, relay_body(json!({"timeout_ms": 30_000})));
    p.next_request(T);
    p.drop_connection();
    let (resp, elapsed) = call.join().unwrap();
    resp.error(502, "client_disconnected");
    assert!(elapsed < Duration::from_millis(30_000 / 4), "{elapsed:?}");
}

#[test]
fn no_client_no_login_and_timeout_fail_before_the_first_byte() {
    let d = start();
    // Nobody connected.
    let r = d.post_json("/v1/browser/request", &relay_body(json!({})));
    r.error(503, "no_active_client");
    let r = d.post_json("/v1/browser/request", &relay_body(json!({"stream": true})));
    r.error(503, "no_active_client");

    // Connected for the platform, but no login state for it.
    let nologin = Plugin::start(&d.ws_url(), "ff-nologin", &["claude", "chatgpt"], &["chatgpt"], None);
    let r = d.post_json("/v1/browser/request", &relay_body(json!({})));
    let err = r.error(409, "credentials_missing");
    assert_eq!(err["details"]["platform"], "claude", "{err}");
    assert_eq!(err["details"]["client_id"], "ff-nologin", "{err}");
    // A client_id that is not connected.
    let r = d.post_json("/v1/browser/request", &relay_body(json!({"client_id": "ff-nobody"})));
    r.error(503, "no_active_client");
    // Nothing reached the plugin, and nothing was admitted.
    assert!(nologin.next_frame(Duration::from_millis(50)).is_none());
    assert_eq!(d.get("/v1/browser").data()["policy"]["targets"], json!([]));

    // A plugin that never answers: 504 after timeout_ms, a policy failure.
    let p = plugin(&d, "ff-silent");
    let started = Instant::now();
    let call = relay_in_thread(&d, relay_body(json!({"client_id": "ff-silent", "timeout_ms": 300})));
    let req = p.next_request(T);
    assert!(req["timeout_ms"].as_u64().unwrap() <= 300, "{req}");
    let (resp, elapsed) = call.join().unwrap();
    resp.error(504, "delivery_timeout");
    assert!(elapsed >= Duration::from_millis(290), "504 after only {elapsed:?}");
    assert!(started.elapsed() < Duration::from_millis(300 + 3000), "504 only after {elapsed:?}");
    let t = target(&d, "ff-silent");
    assert_eq!(t["last_error"], "timeout", "{t}");
    assert_eq!(t["in_flight"], 0);
    // A late answer is ignored.
    p.send_one(json!({"type": "api_response", "request_id": req["request_id"], "status": 200, "body": null}));

    // A streamed request that never gets its first frame: 504 JSON, no
    // stream (another client: the first one is backing off).
    let p = plugin(&d, "ff-silent2");
    let mut sse = open_stream(&d, json!({"client_id": "ff-silent2", "timeout_ms": 300}));
    p.next_request(T);
    assert_eq!(sse.head(T), 504);
    assert_eq!(sse.json(T)["error"]["code"], "delivery_timeout");
}

#[test]
fn invalid_relay_bodies_are_400() {
    let d = start();
    for (body, field) in [
        (json!({"method": "GET", "path": "/x"}), "platform"),
        (json!({"platform": "Claude", "method": "GET", "path": "/x"}), "platform"),
        (json!({"platform": "claude", "path": "/x"}), "method"),
        (json!({"platform": "claude", "method": "get", "path": "/x"}), "method"),
        (json!({"platform": "claude", "method": "GET"}), "path"),
        (json!({"platform": "claude", "method": "GET", "path": "x"}), "path"),
        // A network-path reference would leave the platform's origin.
        (json!({"platform": "claude", "method": "GET", "path": "//evil.example/x"}), "path"),
        (json!({"platform": "claude", "method": "GET", "path": "/\\evil.example/x"}), "path"),
        // Browsers drop tab, CR and LF first: these are `//evil.example/x`.
        (json!({"platform": "claude", "method": "GET", "path": "/\t/evil.example/x"}), "path"),
        (json!({"platform": "claude", "method": "GET", "path": "/\n/evil.example/x"}), "path"),
        (json!({"platform": "claude", "method": "GET", "path": "/x", "headers": {"a": 1}}), "headers"),
        (json!({"platform": "claude", "method": "GET", "path": "/x", "stream": "yes"}), "stream"),
        (json!({"platform": "claude", "method": "GET", "path": "/x", "timeout_ms": 0}), "timeout_ms"),
        (json!({"platform": "claude", "method": "GET", "path": "/x", "client_id": "a b"}), "client_id"),
    ] {
        let err = d.post_json("/v1/browser/request", &body).error(400, "invalid_request");
        assert_eq!(err["details"]["field"], field, "{body}: {err}");
    }
}

/// SIGTERM while a relay waits on a plugin that never answers and a second
/// one is queued behind it for the same target: both callers get 503
/// `shutting_down` within the shutdown grace, not a connection cut without
/// an answer, and the daemon still exits 0.
#[test]
fn relays_still_waiting_at_shutdown_are_answered_503() {
    let mut d = start();
    let p = plugin(&d, "ff-stop");
    let first = relay_in_thread(&d, relay_body(json!({"timeout_ms": 60_000})));
    let _request = p.next_request(T);
    let queued = relay_in_thread(&d, relay_body(json!({"timeout_ms": 60_000})));
    assert!(support::wait_until(T, || target(&d, "ff-stop")["waiting"] == 1), "{}", target(&d, "ff-stop"));
    let status = d.stop();
    assert!(status.success(), "exit: {status}");
    for relay in [first, queued] {
        let (resp, _) = relay.join().expect("the relay got an answer");
        let e = resp.error(503, "shutting_down");
        assert_eq!(e["message"], "The daemon is shutting down.");
    }
}
