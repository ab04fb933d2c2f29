//! The dispatcher checks and claims a chunk of due jobs at once and then
//! delivers them one by one (src/ticker/pipeline.rs). These tests hold a
//! chunk open with a slow plugin and change things under it: each job must
//! still see its conversation and link as they are when its turn comes
//! (docs/RENEWAL.md: read afresh for every job), and each outcome must be in the
//! store when its own delivery ends, not when the chunk's last one does.

mod renewal_support;
mod support;

use renewal_support::*;
use serde_json::{json, Value};

/// Three conversations of one client, each with an active link to a tab,
/// and one due job each, inserted at once so that one chunk claims them.
fn three_due_jobs(d: &support::Daemon, client: &str) {
    let db = d.db_path();
    for (lc, tab) in [("lc-a", 3), ("lc-b", 4), ("lc-c", 5)] {
        seed_route(&db, lc, "chatgpt", "auto", Some(client), Some(tab));
    }
    seed_due_in_order(&db, &[("job-a", "lc-a"), ("job-b", "lc-b"), ("job-c", "lc-c")]);
}

#[test]
fn each_job_of_a_chunk_sees_its_conversation_and_link_as_they_are_at_its_turn() {
    let d = start(json!({}));
    // Each answer takes 3 s: job-a's delivery holds the chunk open while
    // job-b and job-c are already claimed.
    let sim = Sim::connect(&d, "firefox-fresh", &["--delay-ms", "3000"]);
    three_due_jobs(&d, "firefox-fresh");
    sim.wait_deliveries(1);
    for (id, tab) in [("job-b", "tab:4"), ("job-c", "tab:5")] {
        let j = job(&d, id);
        assert_eq!(j["status"], "running", "{id} claimed with job-a's chunk");
        // The claim shows the link it was made for (RENEWAL.md step 7).
        assert_eq!(j["target_snapshot"]["target"]["id"], tab, "{j}");
    }
    // Meanwhile: lc-b is paused, and lc-c's page moves to tab 9 (a user
    // message from there, which the projector does not renew).
    set_status(&d, "lc-b", "paused");
    ingest(
        &d,
        &message("chatgpt", "remote-lc-c", "msg-moved", "user", "moved", Some("firefox-fresh"), Some(9)),
    );

    wait_job(&d, "job-c", "done", |j| j["status"] == "done");
    let frames = sim.expect_deliveries(2);
    let got: Vec<(Value, Value)> =
        frames.iter().map(|f| (f["message_text"].clone(), f["tab_id"].clone())).collect();
    assert_eq!(got, [(json!("[renewal] job-a"), json!(3)), (json!("[renewal] job-c"), json!(9))]);
    // Each job shows the link its delivery used (RENEWAL.md step 7): job-c
    // the one of tab 9, not the one it was claimed with.
    let c = job(&d, "job-c");
    assert_eq!(c["target_snapshot"]["target"]["id"], "tab:9", "{c}");
    let moved = conversation(&d, "lc-c")["active_link"]["link_id"].clone();
    assert_eq!(c["target_snapshot"]["linkId"], moved, "{c}");
    assert_eq!(job(&d, "job-a")["target_snapshot"]["target"]["id"], "tab:3");
    // job-b was put back without an attempt, and not sent.
    let b = job(&d, "job-b");
    assert_eq!((b["status"].clone(), b["attempt_count"].clone()), (json!("pending"), json!(0)), "{b}");
    let line = wait_job_line(&d, "job-b", "job_deferred");
    assert_eq!(line["result"], "automation_paused", "{line}");
    assert_eq!(conversation(&d, "lc-b")["execution_state"], "idle");
}

#[test]
fn a_jobs_outcome_is_stored_when_its_delivery_ends_not_with_its_chunk() {
    let d = start(json!({ "renewal": { "cooldown_ms": 60000 } }));
    let sim = Sim::connect(&d, "firefox-prompt", &["--delay-ms", "3000"]);
    three_due_jobs(&d, "firefox-prompt");
    sim.wait_deliveries(1);
    // job-a's delivery ends 3 s after it started, job-b's 3 s later:
    // job-a must be done, its conversation cooling down and unlocked,
    // while job-b is still on its way. Before, all three outcomes were
    // written after job-c's delivery, so the assistant's answer to job-a
    // could be projected into a job the cooldown should have held back.
    let a = wait_job(&d, "job-a", "done", |j| j["status"] == "done");
    assert_eq!(job(&d, "job-b")["status"], "running", "job-a recorded only after job-b's delivery");
    let conv = conversation(&d, "lc-a");
    assert_eq!(conv["execution_state"], "idle", "{conv}");
    let until = conv["cooldown_until"].as_i64().expect("cooldown set");
    assert!(until >= a["finished_at"].as_i64().unwrap() + 60000 - 5, "{conv}");
    for id in ["job-b", "job-c"] {
        wait_job(&d, id, "done", |j| j["status"] == "done");
    }
    sim.expect_deliveries(3);
}

/// The inter-job pause goes between two deliveries: a job the policy
/// refuses (here the platform's rate window, filled by a relay) is not a
/// delivery, so the next job does not wait out a pause after it.
#[test]
fn a_refused_job_is_not_followed_by_the_inter_job_pause() {
    let d = start(json!({
        "renewal": { "inter_job_jitter_ms": [5000, 5000] },
        "policy": { "rate_limit": { "requests_per_minute_per_platform": 1, "window_ms": 60000 } }
    }));
    let sim = Sim::connect(
        &d,
        "firefox-gap",
        &["--platform", "chatgpt", "--platform", "claude", "--login", "claude"],
    );
    wait_login(&d, "firefox-gap", "claude");
    // The relay takes claude's one slot of the minute.
    let relay =
        d.post_json("/v1/browser/request", &json!({ "platform": "claude", "method": "GET", "path": "/x" }));
    assert_eq!(relay.status, 200);
    let db = d.db_path();
    seed_route(&db, "lc-claude", "claude", "auto", Some("firefox-gap"), Some(3));
    seed_route(&db, "lc-chatgpt", "chatgpt", "auto", Some("firefox-gap"), Some(4));
    seed_due_in_order(&db, &[("job-refused", "lc-claude"), ("job-sent", "lc-chatgpt")]);

    let deferred = wait_job_line(&d, "job-refused", "job_deferred");
    assert_eq!(deferred["result"], "rate_limited", "{deferred}");
    let started = wait_job_line(&d, "job-sent", "job_attempt_started");
    assert!(ts(&started) - ts(&deferred) < 2500, "a 5 s pause after a refusal: {deferred} then {started}");
    wait_job(&d, "job-sent", "done", |j| j["status"] == "done");
    assert_eq!(sim.deliveries().len(), 1);
}
