//! The request policy (docs/POLICY.md) as seen through the raw relay, with real
//! HTTP and a real plugin WebSocket: circuit breaker and backoff refusals
//! (429 with `retry_after_ms`), a half-open trial that never answers, the
//! waiter timeout, and rate-limit delays and refusals. Leases and the queue
//! of one target: `tests/relay_policy_leases.rs`.

mod relay_support;
mod support;

use std::time::{Duration, Instant};

use relay_support::*;
use serde_json::{json, Value};
use support::ws::{answer_ok, answer_status, Plugin};
use support::{now_ms, wait_until};

#[test]
fn an_open_circuit_refuses_with_circuit_open_and_retry_after() {
    let d = start(json!({
        "circuit_breaker": {"failure_threshold": 1, "open_ms": 60_000},
        "backoff": {"base_ms": 1000, "max_ms": 1000},
    }));
    let p = Plugin::start(&d.ws_url(), "ff-circ", &["claude"], &["claude"], Some(answer_status(500)));
    let resp = relay(&d, "/fail", 5000);
    assert_eq!(resp.data()["status"], 500);
    let t = target(&d);
    assert_eq!(t["circuit_state"], "open", "{t}");
    assert_eq!(t["last_error"], "upstream_500");
    let retry_at = t["circuit_retry_at"].as_i64().unwrap();
    assert_eq!(retry_at, t["last_failure_at"].as_i64().unwrap() + 60_000, "{t}");
    assert_eq!(api_requests(&p), 1);

    let before = now_ms();
    let resp = relay(&d, "/next", 5000);
    let after = now_ms();
    let retry_after = refused(&resp, "circuit_open");
    assert!(
        (retry_at - after..=retry_at - before).contains(&retry_after),
        "retry_after_ms {retry_after} not in [{}, {}]",
        retry_at - after,
        retry_at - before
    );
    // A streamed relay and a platform-bound action are refused the same way,
    // and none of them reached the plugin.
    let mut body = relay_body("/s", 5000);
    body["stream"] = json!(true);
    refused(&d.post_json("/v1/browser/request", &body), "circuit_open");
    refused(
        &d.post_json("/v1/browser/actions", &json!({"action": "tab_focus", "platform": "claude"})),
        "circuit_open",
    );
    assert_eq!(api_requests(&p), 0);
    assert_eq!(target(&d)["consecutive_failures"], 1);
}

#[test]
fn backoff_refuses_with_backoff_active_and_doubles() {
    // Long enough that the refused relay right after each failure comes
    // inside the backoff even when a loaded machine stalls the test.
    let base = 1000i64;
    let d = start(json!({
        "circuit_breaker": {"failure_threshold": 10, "open_ms": 60_000},
        "backoff": {"base_ms": base, "max_ms": 10_000},
    }));
    let _p = Plugin::start(&d.ws_url(), "ff-back", &["claude"], &["claude"], Some(answer_status(503)));
    for failures in 1..=3i64 {
        assert_eq!(relay(&d, "/fail", 5000).data()["status"], 503);
        let t = target(&d);
        assert_eq!(t["consecutive_failures"], failures);
        assert_eq!(t["circuit_state"], "closed");
        let until = t["backoff_until"].as_i64().unwrap();
        let expected = base << (failures - 1);
        assert_eq!(
            until - t["last_failure_at"].as_i64().unwrap(),
            expected,
            "backoff after {failures} failures: {t}"
        );
        let before = now_ms();
        let resp = relay(&d, "/during", 5000);
        let after = now_ms();
        let retry_after = refused(&resp, "backoff_active");
        assert!((until - after..=until - before).contains(&retry_after), "{retry_after} vs until {until}");
        // Wait out the backoff (a point in time the test must let pass).
        assert!(wait_until(Duration::from_secs(10), || now_ms() > until));
    }
    // Success resets the counters.
    let _ok = Plugin::start(&d.ws_url(), "ff-back", &["claude"], &["claude"], Some(Box::new(answer_ok)));
    assert_eq!(relay(&d, "/ok", 5000).data()["status"], 200);
    let t = target(&d);
    assert_eq!(t["consecutive_failures"], 0);
    assert_eq!(t["last_error"], Value::Null);
}

#[test]
fn a_half_open_trial_that_never_answers_reopens_the_circuit() {
    // The circuit stays open, and the trial out, long enough for the checks
    // made meanwhile even when a loaded machine stalls the test.
    let open_ms = 2000i64;
    let d = start(json!({
        "circuit_breaker": {"failure_threshold": 1, "open_ms": open_ms},
        "backoff": {"base_ms": 50, "max_ms": 50},
    }));
    let p = Plugin::start(&d.ws_url(), "ff-trial", &["claude"], &["claude"], Some(answer_status(500)));
    assert_eq!(relay(&d, "/fail", 5000).data()["status"], 500);
    let t = target(&d);
    assert_eq!(t["circuit_state"], "open");
    refused(&relay(&d, "/early", 5000), "circuit_open");
    let retry_at = t["circuit_retry_at"].as_i64().unwrap();
    assert!(wait_until(Duration::from_secs(10), || now_ms() > retry_at));
    let _ = api_requests(&p);

    // The trial goes to a plugin that never answers.
    p.set_responder(None);
    let trial_timeout = 2000u64;
    let trial_started = now_ms();
    let trial = relay_in_thread(&d, "/trial", trial_timeout);
    let req = p.next_request(T);
    assert_eq!(req["path"], "/trial");
    let t = target(&d);
    assert_eq!(t["circuit_state"], "half_open", "{t}");
    assert_eq!(t["in_flight"], 1);
    // While the trial is out, everyone else is refused.
    refused(&relay(&d, "/meanwhile", 5000), "circuit_open");

    let (resp, elapsed) = trial.join().unwrap();
    resp.error(504, "delivery_timeout");
    assert!(elapsed >= Duration::from_millis(trial_timeout - 10), "{elapsed:?}");
    let ended = now_ms();
    let t = target(&d);
    assert_eq!(t["circuit_state"], "open", "a failed trial must reopen the circuit, not stay half_open: {t}");
    assert_eq!(t["consecutive_failures"], 2);
    assert_eq!(t["last_error"], "timeout");
    assert_eq!(t["in_flight"], 0);
    let retry_at = t["circuit_retry_at"].as_i64().unwrap();
    // Reopened when the trial failed: after its timeout, before we saw it.
    assert!(
        retry_at >= trial_started + trial_timeout as i64 + open_ms - 5 && retry_at <= ended + open_ms,
        "circuit_retry_at {retry_at}, trial started {trial_started}, ended by {ended}: {t}"
    );
    refused(&relay(&d, "/after", 5000), "circuit_open");

    // The next trial succeeds: closed again.
    assert!(wait_until(Duration::from_secs(10), || now_ms() > retry_at));
    p.set_responder(Some(Box::new(answer_ok)));
    assert_eq!(relay(&d, "/trial2", 5000).data()["status"], 200);
    let t = target(&d);
    assert_eq!(t["circuit_state"], "closed", "{t}");
    assert_eq!(t["consecutive_failures"], 0);
}

#[test]
fn a_waiter_gives_up_after_waiter_timeout_ms() {
    let d = start(json!({"waiter_timeout_ms": 300}));
    let p = Plugin::start(&d.ws_url(), "ff-wait", &["claude"], &["claude"], None);
    let first = relay_in_thread(&d, "/held", 10_000);
    let held = p.next_request(T);
    let started = Instant::now();
    let resp = relay(&d, "/queued", 10_000);
    let waited = started.elapsed();
    assert_eq!(refused(&resp, "waiter_timeout"), 0);
    assert!(waited >= Duration::from_millis(290), "gave up after {waited:?}");
    assert!(waited < Duration::from_millis(300 + 3000), "gave up only after {waited:?}");
    p.send(answer_ok(&held));
    assert_eq!(first.join().unwrap().0.data()["status"], 200);
    assert_eq!(target(&d)["waiting"], 0);
}

#[test]
fn a_rate_delay_past_the_timeout_is_refused_rate_limited() {
    let d = start(json!({"rate_limit": {"requests_per_minute_per_platform": 1, "window_ms": 60_000}}));
    let p = Plugin::start(&d.ws_url(), "ff-rate", &["claude"], &["claude"], Some(Box::new(answer_ok)));
    let first = relay(&d, "/one", 5000).data();
    let dispatched = first["admission"]["admitted_at"].as_i64().unwrap();
    let before = now_ms();
    let resp = relay(&d, "/two", 1000);
    let after = now_ms();
    let retry_after = refused(&resp, "rate_limited");
    let until = dispatched + 60_000;
    assert!((until - after..=until - before).contains(&retry_after), "{retry_after}");
    assert_eq!(api_requests(&p), 1, "the refused relay never reached the plugin");
    // Refused, so not charged to the window.
    let platforms = d.get("/v1/browser").data()["policy"]["platforms"].clone();
    assert_eq!(platforms[0]["recent_dispatch_count"], 1, "{platforms}");
}

#[test]
fn a_rate_delay_within_the_timeout_is_waited_out() {
    // Long enough that /c comes while /a is still in the window, however
    // slowly a loaded machine runs /a and /b.
    let window = 3000i64;
    let d = start(json!({"rate_limit": {"requests_per_minute_per_platform": 2, "window_ms": window}}));
    let p = Plugin::start(&d.ws_url(), "ff-delay", &["claude"], &["claude"], Some(Box::new(answer_ok)));
    let a = relay(&d, "/a", 5000).data();
    let b = relay(&d, "/b", 5000).data();
    assert_eq!(a["admission"]["rate_limit_delay_ms"], 0);
    assert_eq!(b["admission"]["rate_limit_delay_ms"], 0);
    let c = relay(&d, "/c", 5000).data();
    let delay = c["admission"]["rate_limit_delay_ms"].as_i64().unwrap();
    assert!(delay > 0 && delay <= window, "delay {delay}");
    let first = a["admission"]["admitted_at"].as_i64().unwrap();
    let charged = c["admission"]["admitted_at"].as_i64().unwrap() + delay;
    assert_eq!(charged, first + window, "charged when the oldest dispatch leaves the window");
    // The plugin got it no earlier than that (1 ms: the sleep is whole ms).
    let mut arrivals = Vec::new();
    while let Some(r) = p.next_frame(Duration::from_millis(20)) {
        if r.frame["type"] == "api_request" {
            arrivals.push((r.frame["path"].as_str().unwrap().to_string(), r.at_ms));
        }
    }
    let c_at = arrivals.iter().find(|(path, _)| path == "/c").unwrap().1;
    assert!(c_at >= first + window - 1, "sent {} ms before the window allowed", first + window - c_at);
}

#[test]
fn the_api_request_carries_the_timeout_left_after_the_rate_delay() {
    // Long enough that /b comes while /a is still in the window.
    let window = 3000u64;
    let d = start(json!({"rate_limit": {"requests_per_minute_per_platform": 1, "window_ms": window}}));
    let p = Plugin::start(&d.ws_url(), "ff-left", &["claude"], &["claude"], None);
    let first = relay_in_thread(&d, "/a", 5000);
    let req = p.next_request(T);
    let left = req["timeout_ms"].as_u64().unwrap();
    assert!((4000..=5000).contains(&left), "api_request timeout_ms {left} without any delay");
    p.send(answer_ok(&req));
    first.join().unwrap().0.data();
    let second = relay_in_thread(&d, "/b", 5000);
    let req = p.next_request(T);
    p.send(answer_ok(&req));
    let data = second.join().unwrap().0.data();
    let delay = data["admission"]["rate_limit_delay_ms"].as_u64().unwrap();
    assert!(delay > 0, "{data}");
    let left = req["timeout_ms"].as_u64().unwrap();
    assert!(left <= 5000 - delay + 1, "api_request timeout_ms {left} after a {delay} ms delay");
    assert!(left > 5000 - delay - 1000, "api_request timeout_ms {left} after a {delay} ms delay");
}
