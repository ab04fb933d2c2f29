//! Tests of the persisted JSON document (keys, round trip, restore of
//! broken documents) and of the view.

use super::*;
use serde_json::Value;

#[test]
fn persisted_document_has_exactly_the_spec_keys_and_round_trips() {
    let mut c = circuit_cfg();
    c.stale_lease.idle_ms = 10;
    let mut ctl = Controller::new(c.clone());
    let t = claude();
    open_circuit(&mut ctl, &t);
    let other = target("firefox-2", "chatgpt");
    let g = grant(&mut ctl, &other, T0 + 3_000);
    ctl.sweep(T0 + 3_100);
    assert_eq!(tv(&ctl, &other, T0 + 3_100).stale_sweep_count, 1);
    let g2 = grant(&mut ctl, &other, T0 + 3_200);
    ctl.complete(&other, g2.lease_id, &Outcome::Success, T0 + 3_300);
    let _ = g;

    let json = ctl.persisted_json(T0 + 3_300);
    assert!(json.starts_with(r#"{"version":1,"platforms":["#), "{json}");
    let doc: Value = serde_json::from_str(&json).unwrap();
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&doc), ["platforms", "targets", "version"]);
    let platform = &doc["platforms"][0];
    assert_eq!(keys(platform), ["dispatches", "last_dispatched_at", "platform"]);
    let target_keys = [
        "backoff_until",
        "circuit_retry_at",
        "circuit_state",
        "client_id",
        "consecutive_failures",
        "last_activity_at",
        "last_activity_reason",
        "last_error",
        "last_failure_at",
        "last_stale_sweep_at",
        "last_stale_sweep_idle_ms",
        "last_stale_sweep_reason",
        "last_stale_sweep_request_id",
        "last_success_at",
        "platform",
        "stale_sweep_count",
    ];
    for entry in doc["targets"].as_array().unwrap() {
        assert_eq!(keys(entry), target_keys);
    }
    assert_eq!(doc["targets"].as_array().unwrap().len(), 2);
    assert_eq!(doc["platforms"][1]["dispatches"], serde_json::json!([T0, T0 + 1_000, T0 + 3_000]));

    // Round trip: a fresh controller restored at the same time writes the
    // same document and shows the same view (minus process-local fields).
    let mut restored = Controller::new(c);
    assert_eq!(restored.restore(&json, T0 + 3_300), Ok(0));
    assert_eq!(restored.persisted_json(T0 + 3_300), json);
    assert_eq!(restored.view(None, T0 + 3_300), ctl.view(None, T0 + 3_300), "no lease or waiter was live");
    assert!(!restored.take_dirty(), "restoring is not a change to save");
}

#[test]
fn restore_drops_out_of_window_dispatches_and_reopens_half_open() {
    let mut c = circuit_cfg();
    c.rate_limit.window_ms = 120_000;
    let mut ctl = Controller::new(c.clone());
    let t = claude();
    let opened = open_circuit(&mut ctl, &t);
    let trial_at = opened + 60_000;
    let g = grant(&mut ctl, &t, trial_at);
    assert!(g.trial);
    let json = ctl.persisted_json(trial_at);
    assert!(json.contains(r#""circuit_state":"half_open""#));
    let all = format!(r#""dispatches":[{T0},{},{opened},{trial_at}]"#, T0 + 1_000);
    assert!(json.contains(&all), "{json}");

    // Restart 62 s later: the first three dispatches are out of the window.
    let later = trial_at + 62_000;
    let mut fresh = Controller::new(c);
    fresh.restore(&json, later).unwrap();
    let v = tv(&fresh, &t, later);
    assert_eq!(v.circuit_state, CircuitState::Open);
    assert_eq!(v.circuit_retry_at, Some(trial_at));
    assert_eq!((v.in_flight, v.waiting), (0, 0));
    let p = pv(&fresh, "claude", later);
    assert_eq!(p.recent_dispatch_count, 1);
    assert_eq!(p.last_dispatched_at, Some(trial_at));
    let saved = fresh.persisted_json(later);
    assert!(saved.contains(&format!(r#""dispatches":[{trial_at}]"#)), "{saved}");
    assert!(saved.contains(r#""circuit_state":"open""#));
    // The retry time has passed: the next caller is the new trial.
    assert!(grant(&mut fresh, &t, later).trial);
}

#[test]
fn broken_or_unknown_documents_are_ignored() {
    let clean = Controller::new(cfg()).view(None, T0);
    for doc in [
        "",
        "not json",
        "[]",
        "{\"version\":2,\"platforms\":[],\"targets\":[]}",
        "{\"platforms\":[],\"targets\":[]}",
        "{\"version\":\"1\"}",
        "{\"version\":1,\"platforms\":[",
    ] {
        let mut ctl = Controller::new(cfg());
        assert!(ctl.restore(doc, T0).is_err(), "{doc:?}");
        assert_eq!(ctl.view(None, T0), clean);
    }
    // Malformed entries are skipped, good ones kept; missing optional
    // fields read as null, unknown circuit states as closed.
    let mut ctl = Controller::new(cfg());
    let doc = format!(
        r#"{{"version":1,
            "platforms":[{{"platform":"claude","dispatches":[{T0},"x"]}},{{"platform":""}},{{"dispatches":[1]}},
                         {{"platform":"gemini","dispatches":[{later}, {T0}]}}],
            "targets":[{{"client_id":"a","platform":"claude","circuit_state":"weird","consecutive_failures":2}},
                       {{"client_id":"","platform":"claude"}},{{"client_id":"b"}},7]}}"#,
        later = T0 + 5
    );
    assert_eq!(ctl.restore(&doc, T0 + 10), Ok(6));
    let view = ctl.view(None, T0 + 10);
    assert_eq!(view.platforms.len(), 2);
    assert_eq!(view.platforms[0].platform, "claude");
    assert_eq!(view.platforms[0].recent_dispatch_count, 0);
    assert_eq!(view.platforms[1].recent_dispatch_count, 2);
    assert_eq!(view.targets.len(), 1);
    assert_eq!(view.targets[0].circuit_state, CircuitState::Closed);
    assert_eq!(view.targets[0].consecutive_failures, 2);
    assert_eq!(view.targets[0].last_error, None);
}

#[test]
fn view_filters_by_platform() {
    let mut ctl = Controller::new(cfg());
    grant(&mut ctl, &target("a", "claude"), T0);
    grant(&mut ctl, &target("a", "chatgpt"), T0);
    wait_id(ctl.try_admit(&target("a", "chatgpt"), "w", T0, u64::MAX, None));
    let all = ctl.view(None, T0);
    assert_eq!(all.platforms.len(), 2);
    assert_eq!(all.targets.len(), 2);
    assert_eq!(all.defaults, cfg());
    let chatgpt = ctl.view(Some("chatgpt"), T0);
    assert_eq!(chatgpt.platforms.len(), 1);
    assert_eq!(chatgpt.platforms[0].waiting, 1);
    assert_eq!(chatgpt.targets.len(), 1);
    assert_eq!(chatgpt.targets[0].waiting, 1);
    assert!(ctl.view(Some("gemini"), T0).targets.is_empty());
    let json = serde_json::to_value(&chatgpt).unwrap();
    assert_eq!(json["targets"][0]["circuit_state"], "closed");
    assert_eq!(json["targets"][0]["in_flight"], 1);
    assert_eq!(json["platforms"][0]["recent_dispatch_count"], 1);
    assert_eq!(json["defaults"]["rate_limit"]["window_ms"], 60_000);
}
