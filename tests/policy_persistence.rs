//! The request policy's state survives restarts (docs/POLICY.md "What survives a restart"):
//! across a clean restart an open circuit is still open with the same
//! `retry_after_ms` arithmetic and a used rate budget still delays the next
//! admission; across `kill -9` the state is the last one saved, and what is
//! lost is at most what happened within the last `persistence_debounce_ms`.
//! Changes are made through the raw relay with a real plugin; the saved
//! document is read straight from `browser_request_policy_state`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::ws::{answer_ok, answer_status, Plugin};
use support::{now_ms, wait_until, Daemon, DaemonOpts, Resp};

const CLIENT: &str = "ff-persist";

fn start(policy: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(json!({
        "timed_jobs": {"interval_ms": 3_600_000},
        "policy": policy,
    })))
}

fn relay(d: &Daemon, path: &str, timeout_ms: u64) -> Resp {
    let body =
        json!({"platform": "claude", "method": "GET", "path": path, "timeout_ms": timeout_ms}).to_string();
    support::try_request(
        d.addr,
        "POST",
        "/v1/browser/request",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
        Duration::from_secs(30),
    )
    .expect("relay POST")
}

fn plugin(d: &Daemon, status: Option<u16>) -> Plugin {
    let responder = match status {
        Some(s) => answer_status(s),
        None => Box::new(answer_ok),
    };
    Plugin::start(&d.ws_url(), CLIENT, &["claude"], &["claude"], Some(responder))
}

fn view(d: &Daemon) -> Value {
    d.get("/v1/browser?platform=claude").data()["policy"].clone()
}

fn target(d: &Daemon) -> Value {
    let policy = view(d);
    let targets = policy["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 1, "{policy}");
    targets[0].clone()
}

/// The saved document (`value_json` of key "global"), if any.
fn saved(d: &Daemon) -> Option<Value> {
    let conn = support::db(&d.db_path());
    let text: Option<String> = conn
        .query_row(
            "SELECT value_json FROM browser_request_policy_state WHERE state_key = 'global'",
            [],
            |r| r.get(0),
        )
        .ok();
    text.map(|t| {
        serde_json::from_str(&t)
            .unwrap_or_else(|e| panic!("the saved policy state is not a JSON document ({e}): {t:?}"))
    })
}

fn saved_target(doc: &Value) -> Value {
    doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["client_id"] == CLIENT && t["platform"] == "claude")
        .cloned()
        .unwrap_or_else(|| panic!("no saved target: {doc}"))
}

/// Every persisted field of a target (docs/POLICY.md document shape).
const TARGET_FIELDS: &[&str] = &[
    "client_id",
    "platform",
    "circuit_state",
    "circuit_retry_at",
    "backoff_until",
    "consecutive_failures",
    "last_activity_at",
    "last_activity_reason",
    "last_error",
    "last_failure_at",
    "last_success_at",
    "stale_sweep_count",
    "last_stale_sweep_at",
    "last_stale_sweep_idle_ms",
    "last_stale_sweep_reason",
    "last_stale_sweep_request_id",
];

/// Asserts the view's target carries exactly the saved values.
fn assert_target_is(view_target: &Value, saved_target: &Value) {
    for field in TARGET_FIELDS {
        assert!(saved_target.get(*field).is_some(), "saved document lacks {field}: {saved_target}");
        assert_eq!(
            view_target[*field], saved_target[*field],
            "{field} after restart differs from the saved state\nview:  {view_target}\nsaved: {saved_target}"
        );
    }
    assert_eq!(view_target["in_flight"], 0);
    assert_eq!(view_target["waiting"], 0);
}

/// Waits until the saved document holds the target as the view shows it
/// now, so that a restart afterwards tests the restore alone (the save at
/// shutdown is tested on its own below).
fn wait_saved(d: &Daemon) {
    let now = target(d);
    let ok = wait_until(Duration::from_secs(5), || {
        saved(d).is_some_and(|doc| {
            doc["targets"].as_array().is_some_and(|ts| !ts.is_empty())
                && TARGET_FIELDS.iter().all(|f| saved_target(&doc)[*f] == now[*f])
        })
    });
    assert!(ok, "the policy state was never saved: {:?}", saved(d));
}

// ---------------------------------------------------------------------------
// Clean restart
// ---------------------------------------------------------------------------

#[test]
fn an_open_circuit_is_still_open_after_a_clean_restart() {
    let mut d = start(json!({
        "circuit_breaker": {"failure_threshold": 1, "open_ms": 60_000},
        "backoff": {"base_ms": 1000, "max_ms": 1000},
    }));
    let p = plugin(&d, Some(500));
    assert_eq!(relay(&d, "/fail", 5000).data()["status"], 500);
    let before = target(&d);
    assert_eq!(before["circuit_state"], "open");
    let retry_at = before["circuit_retry_at"].as_i64().unwrap();
    drop(p);
    wait_saved(&d);

    d.restart();
    // Shown as before (everything but in_flight/waiting is restored) ...
    let after = target(&d);
    for field in TARGET_FIELDS {
        assert_eq!(after[*field], before[*field], "{field}: before {before}\nafter {after}");
    }
    // ... and still refusing, with the same retry_after arithmetic.
    let _p = plugin(&d, None);
    let t0 = now_ms();
    let resp = relay(&d, "/after-restart", 5000);
    let t1 = now_ms();
    let err = resp.error(429, "circuit_open");
    let retry_after = err["details"]["retry_after_ms"].as_i64().unwrap();
    assert!(
        (retry_at - t1..=retry_at - t0).contains(&retry_after),
        "retry_after_ms {retry_after} not in [{}, {}]",
        retry_at - t1,
        retry_at - t0
    );
    // The saved document has the documented shape.
    let doc = saved(&d).expect("saved policy state");
    assert_eq!(doc["version"], 1, "{doc}");
    assert_eq!(saved_target(&doc)["circuit_state"], "open");
}

#[test]
fn a_used_rate_budget_still_delays_after_a_clean_restart() {
    let window = 5000i64;
    let mut d = start(json!({"rate_limit": {"requests_per_minute_per_platform": 2, "window_ms": window}}));
    let p = plugin(&d, None);
    let a = relay(&d, "/a", 5000).data();
    let b = relay(&d, "/b", 5000).data();
    let first = a["admission"]["admitted_at"].as_i64().unwrap();
    let second = b["admission"]["admitted_at"].as_i64().unwrap();
    drop(p);
    wait_saved(&d);

    d.restart();
    let platform = view(&d)["platforms"][0].clone();
    assert_eq!(platform["recent_dispatch_count"], 2, "{platform}");
    assert_eq!(platform["last_dispatched_at"], second, "{platform}");

    let _p = plugin(&d, None);
    let c = relay(&d, "/c", 10_000).data();
    let delay = c["admission"]["rate_limit_delay_ms"].as_i64().unwrap();
    assert!(delay > 0, "the budget used before the restart must delay this one: {c}");
    // Delayed by the rest of the window: until the oldest dispatch leaves it.
    assert_eq!(c["admission"]["admitted_at"].as_i64().unwrap() + delay, first + window, "{c}");
    let doc = saved(&d).expect("saved");
    let dispatches = doc["platforms"][0]["dispatches"].as_array().unwrap().len();
    assert!(dispatches >= 1, "{doc}");
}

// ---------------------------------------------------------------------------
// kill -9
// ---------------------------------------------------------------------------

#[test]
fn after_kill_9_the_state_is_the_last_saved_one_and_only_the_last_debounce_window_is_lost() {
    let debounce = 200u64;
    let mut d = start(json!({
        "persistence_debounce_ms": debounce,
        "circuit_breaker": {"failure_threshold": 100, "open_ms": 60_000},
        "backoff": {"base_ms": 1, "max_ms": 1},
    }));
    let p = plugin(&d, Some(500));

    // Change A, then wait until it has been saved.
    assert_eq!(relay(&d, "/a", 5000).data()["status"], 500);
    let a_done = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || saved(&d)
            .is_some_and(|doc| saved_target(&doc)["consecutive_failures"] == 1)),
        "change A was never saved"
    );
    let a_saved_after = a_done.elapsed();
    assert!(
        a_saved_after < Duration::from_millis(debounce + 1000),
        "saved only {a_saved_after:?} after the change (debounce {debounce} ms)"
    );
    let saved_a = saved_target(&saved(&d).unwrap());
    assert_eq!(saved_a["last_error"], "upstream_500");

    // Change B, then kill -9 at once.
    let backoff_until = target(&d)["backoff_until"].as_i64().unwrap();
    assert!(wait_until(Duration::from_secs(2), || now_ms() > backoff_until));
    let b_started = Instant::now();
    assert_eq!(relay(&d, "/b", 5000).data()["status"], 500);
    d.kill9();
    let b_to_kill = b_started.elapsed();
    drop(p);

    // What the kill left on disk.
    let doc = saved(&d).expect("saved state after kill -9");
    let saved_now = saved_target(&doc);
    let failures = saved_now["consecutive_failures"].as_i64().unwrap();
    // The first change, saved before, survives in full.
    assert!(failures >= 1, "change A was lost: {saved_now}");
    // Only changes of the last debounce window may be lost: B may be missing
    // only if the kill came within the debounce window after it began (plus
    // a margin for the writer thread to be scheduled).
    assert!(failures <= 2, "{saved_now}");
    if b_to_kill >= Duration::from_millis(debounce + 500) {
        assert_eq!(failures, 2, "change B, {b_to_kill:?} before the kill, was lost");
    }
    if failures == 1 {
        // B's failure is lost as a whole; A's is intact.
        for field in
            ["consecutive_failures", "last_error", "last_failure_at", "backoff_until", "circuit_state"]
        {
            assert_eq!(saved_now[field], saved_a[field], "{field}: {saved_now} vs {saved_a}");
        }
    }

    // After the restart the state equals the saved one.
    d.restart();
    assert_target_is(&target(&d), &saved_now);
    let platform = view(&d)["platforms"][0].clone();
    assert_eq!(platform["last_dispatched_at"], doc["platforms"][0]["last_dispatched_at"], "{platform}");
    assert_eq!(
        platform["recent_dispatch_count"].as_u64().unwrap() as usize,
        doc["platforms"][0]["dispatches"].as_array().unwrap().len(),
        "{platform}"
    );

    // The same kind of change with enough time before the kill survives:
    // the saver runs at most `debounce` after the first change, so waiting
    // that long (plus 500 ms for scheduling on a loaded machine) must be
    // enough. This wait is what is under test, not a synchronisation.
    let p = plugin(&d, Some(500));
    assert_eq!(relay(&d, "/c", 5000).data()["status"], 500);
    let after_c = target(&d);
    assert_eq!(after_c["consecutive_failures"].as_i64().unwrap(), failures + 1);
    std::thread::sleep(Duration::from_millis(debounce + 500));
    d.kill9();
    drop(p);
    d.restart();
    let restored = target(&d);
    assert_eq!(
        restored["consecutive_failures"], after_c["consecutive_failures"],
        "change C was lost: {restored}"
    );
    assert_eq!(restored["last_failure_at"], after_c["last_failure_at"]);
    assert_eq!(restored["backoff_until"], after_c["backoff_until"]);
    assert_eq!(restored["last_activity_reason"], "complete_failure");
}

/// The save at shutdown: with a debounce far longer than the test, the only
/// save is the one a clean stop must do. An open circuit and the used rate
/// budget must both survive the restart.
#[test]
fn a_clean_stop_saves_the_pending_state() {
    let mut d = start(json!({
        "persistence_debounce_ms": 60_000,
        "circuit_breaker": {"failure_threshold": 1, "open_ms": 60_000},
        "backoff": {"base_ms": 1000, "max_ms": 1000},
    }));
    let p = plugin(&d, Some(502));
    assert_eq!(relay(&d, "/x", 5000).data()["status"], 502);
    let before = target(&d);
    assert_eq!(before["circuit_state"], "open");
    let platform_before = view(&d)["platforms"][0].clone();
    assert!(
        saved(&d).is_none_or(|doc| doc["targets"].as_array().is_none_or(|t| t.is_empty())),
        "nothing should be saved before the debounce (60 s) or the shutdown"
    );
    drop(p);
    d.restart();
    let doc = saved(&d);
    let after = target(&d);
    for field in TARGET_FIELDS {
        assert_eq!(
            after[*field], before[*field],
            "{field} not restored after a clean stop; saved document: {doc:?}"
        );
    }
    assert_eq!(after["circuit_state"], "open");
    assert_eq!(after["last_error"], "upstream_502");
    assert_eq!(view(&d)["platforms"][0], platform_before);
    let _p = plugin(&d, None);
    relay(&d, "/y", 5000).error(429, "circuit_open");
}
