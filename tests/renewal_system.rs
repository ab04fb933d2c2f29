//! Renewal as a whole (docs/RENEWAL.md "System: `automation_state`", "Loop
//! protection", docs/API.md "Renewal"): the jobs API, system pause / drain /
//! resume, the standby role, the repeated-message pause on ingest, and one
//! end-to-end run through the real bridge with the plugin simulator:
//! message → auto → job → delivery → done.
//!
//! Port of the seed test "ConductorRuntime exposes renewal jobs APIs and
//! registers the renewal dispatcher runner".

mod renewal_support;
mod support;

use std::collections::BTreeSet;

use renewal_support::*;
use serde_json::{json, Value};
use support::{now_ms, seed_job, wait_until, JobSeed, JOB_KEYS};

#[test]
fn exposes_renewal_jobs_apis_and_registers_the_dispatcher() {
    let d = start(json!({}));
    // Registered: `runner` panics with the list when it is missing.
    assert_eq!(runner(&d, "renewal.dispatcher")["name"], "renewal.dispatcher");

    let db = d.db_path();
    let now = now_ms();
    seed_message(
        &db,
        "msg-renewal-job-api",
        "chatgpt",
        "conv-renewal-job-api",
        "assistant",
        "renewal jobs api message",
        now - 30_000,
    );
    seed_conversation(&db, "lc-renewal-job-api", "chatgpt", "auto", "idle");
    seed_link(
        &db,
        "link-renewal-job-api",
        "lc-renewal-job-api",
        "chatgpt",
        Some("firefox-chatgpt"),
        "conv-renewal-job-api",
        Some(44),
    );
    let mut j = JobSeed::new("job-renewal-job-api", "pending");
    j.local_conversation_id = "lc-renewal-job-api".into();
    j.message_id = "msg-renewal-job-api".into();
    j.payload = json!({
        "kind": "renewal.message", "sourceMessage": { "id": "msg-renewal-job-api" },
        "template": "summary_with_link", "text": "[renewal] api payload", "version": 1
    })
    .to_string();
    j.target_snapshot = Some(
        json!({ "target": { "id": "tab:44", "kind": "browser.proxy_delivery",
                            "payload": { "clientId": "firefox-chatgpt", "tabId": 44 } } })
        .to_string(),
    );
    seed_job(&db, &j);

    let list = d.get("/v1/renewal/jobs?status=pending&local_conversation_id=lc-renewal-job-api").data();
    assert_eq!(list["count"], 1, "{list}");
    let item = &list["jobs"][0];
    assert_eq!(item["job_id"], "job-renewal-job-api");
    assert_eq!(item["payload_text"], "[renewal] api payload");
    assert_eq!(item["target_snapshot"]["target"]["kind"], "browser.proxy_delivery");
    let by_message = d.get("/v1/renewal/jobs?message_id=msg-renewal-job-api").data();
    assert_eq!(by_message["count"], 1);
    assert_eq!(
        d.get("/v1/renewal/jobs?status=done&local_conversation_id=lc-renewal-job-api").data()["count"],
        0
    );

    let read = job(&d, "job-renewal-job-api");
    assert_eq!(read["job_id"], "job-renewal-job-api");
    assert_eq!(read["local_conversation_id"], "lc-renewal-job-api");
    assert_eq!(read["status"], "pending");
    assert_eq!(read["message_id"], "msg-renewal-job-api");
    assert_eq!(read["payload"]["sourceMessage"]["id"], "msg-renewal-job-api");
    let keys: BTreeSet<&str> = read.as_object().unwrap().keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = JOB_KEYS.iter().copied().collect();
    assert_eq!(keys, expected, "every field present, null when unknown");
    assert_eq!(read["finished_at"], Value::Null);

    d.get("/v1/renewal/jobs/job-nope").error(404, "not_found");
    let e = d.get("/v1/renewal/jobs?status=waiting").error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "status");

    // The job API drives the dispatcher: cancel, then retry, and a plugin
    // that shows up gets the delivery.
    let cancelled = d.post_json("/v1/renewal/jobs/job-renewal-job-api/cancel", &json!({})).data();
    assert_eq!(cancelled["status"], "failed");
    assert_eq!(cancelled["last_error"], "cancelled");
    d.post_json("/v1/renewal/jobs/job-renewal-job-api/cancel", &json!({})).error(409, "invalid_state");
    let sim = Sim::connect(&d, "firefox-chatgpt", &[]);
    let retried = d.post_json("/v1/renewal/jobs/job-renewal-job-api/retry", &json!({})).data();
    assert_eq!(retried["job_id"], "job-renewal-job-api");
    let done = wait_job(&d, "job-renewal-job-api", "done", |j| j["status"] == "done");
    wait_job_line(&d, "job-renewal-job-api", "job_completed");
    assert_eq!(done["attempt_count"], 1);
    sim.expect_deliveries(1);
    let frames = sim.deliveries_for("msg-renewal-job-api");
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["message_text"], "[renewal] api payload");
    assert_eq!(frames[0]["tab_id"], 44);
}

#[test]
fn drain_stops_projection_but_finishes_pending_jobs() {
    let d = start(json!({}));
    let sim = Sim::connect(&d, "firefox-drain", &["--delay-ms", "800"]);
    let lc = auto_conversation(&d, "chatgpt", "conv-drain", Some("firefox-drain"), Some(5));
    pause_settled(&d);
    // A job already pending, and a message the projector has not seen yet.
    seed_job(&d.db_path(), &due_job("job-drain", &lc, "[renewal] drain"));
    ingest(
        &d,
        &message(
            "chatgpt",
            "conv-drain",
            "msg-drain",
            "assistant",
            "arrived while paused",
            Some("firefox-drain"),
            Some(5),
        ),
    );

    let t = now_ms();
    let sys = system(&d, "drain");
    assert_eq!(sys["automation_state"], "draining");
    assert_eq!(sys["drained"], false, "a job is still pending: {sys}");

    // The pending job is still delivered while draining.
    wait_job(&d, "job-drain", "running", |j| j["status"] == "running");
    let sys = d.get("/v1/system").data();
    assert_eq!(sys["drained"], false, "a job is running: {sys}");
    wait_job(&d, "job-drain", "done", |j| j["status"] == "done");
    assert!(
        wait_until(WAIT, || d.get("/v1/system").data()["drained"] == true),
        "drained once nothing is pending or running: {}",
        d.get("/v1/system").data()
    );
    sim.expect_deliveries(1);

    // The projector creates nothing while draining, and says why.
    let skipped = wait_log(&d, "projector scan_skipped/system_draining", |l| {
        is_stage(l, "renewal.projector", "scan_skipped", Some("system_draining")) && ts(l) >= t
    });
    assert_eq!(skipped["details"], json!({}));
    wait_runs(&d, "renewal.projector", 3);
    assert!(jobs_for_message(&d, "msg-drain").is_empty());
    assert!(log_find(&d, |l| l["details"]["message_id"] == "msg-drain").is_empty(), "msg-drain was examined");
    assert_eq!(runner(&d, "renewal.projector")["last_result"], "system_draining");

    // Resume: the cursor did not move, so the message is projected now.
    let sys = system(&d, "resume");
    assert_eq!(sys["automation_state"], "running");
    assert_eq!(sys["drained"], false);
    let job = wait_job_for_message(&d, "msg-drain");
    wait_job(&d, job["job_id"].as_str().unwrap(), "done", |j| j["status"] == "done");
}

#[test]
fn system_pause_skips_both_runners_and_leaves_jobs_untouched() {
    let mut d = start(json!({}));
    let sim = Sim::connect(&d, "firefox-sp", &[]);
    let lc = auto_conversation(&d, "chatgpt", "conv-sp", Some("firefox-sp"), Some(6));
    pause_settled(&d);
    let sys = d.get("/v1/system").data();
    assert_eq!(sys["automation_state"], "paused");
    let seed = due_job("job-sp", &lc, "[renewal] paused system");
    seed_job(&d.db_path(), &seed);
    ingest(
        &d,
        &message("chatgpt", "conv-sp", "msg-sp", "assistant", "while paused", Some("firefox-sp"), Some(6)),
    );
    let t = now_ms();

    for r in ["renewal.projector", "renewal.dispatcher"] {
        let line = wait_log(&d, &format!("{r} scan_skipped"), |l| {
            is_stage(l, r, "scan_skipped", Some("system_paused")) && ts(l) > t
        });
        assert_eq!(line["details"], json!({}));
    }
    wait_runs(&d, "renewal.dispatcher", 3);
    let check_untouched = |d: &support::Daemon| {
        let job = job(d, "job-sp");
        assert_eq!(job["status"], "pending");
        assert_eq!(job["attempt_count"], 0);
        assert_eq!(job["next_attempt_at"].as_i64(), seed.next_attempt_at);
        assert_eq!(job["updated_at"].as_i64(), Some(seed.updated_at), "job untouched: {job}");
        assert_eq!(job["log_path"], Value::Null);
        assert!(jobs_for_message(d, "msg-sp").is_empty());
        assert!(log_find(d, |l| l["details"]["message_id"] == "msg-sp").is_empty());
        assert!(job_lines(d, "job-sp").is_empty());
        for r in ["renewal.projector", "renewal.dispatcher"] {
            assert_eq!(runner(d, r)["last_result"], "system_paused", "{r}");
        }
    };
    check_untouched(&d);
    assert!(sim.deliveries().is_empty());
    // Reads and manual calls still work while paused.
    assert_eq!(set_status(&d, &lc, "paused")["automation_status"], "paused");
    assert_eq!(set_status(&d, &lc, "auto")["automation_status"], "auto");

    // Durable: still paused after a restart.
    drop(sim);
    d.restart();
    assert_eq!(d.get("/v1/system").data()["automation_state"], "paused");
    let t = now_ms();
    wait_log(&d, "dispatcher scan_skipped after restart", |l| {
        is_stage(l, "renewal.dispatcher", "scan_skipped", Some("system_paused")) && ts(l) > t
    });
    wait_runs(&d, "renewal.dispatcher", 2);
    check_untouched(&d);

    // Resume: both the job and the message go through.
    let sim = Sim::connect(&d, "firefox-sp", &[]);
    system(&d, "resume");
    wait_job(&d, "job-sp", "done", |j| j["status"] == "done");
    let job = wait_job_for_message(&d, "msg-sp");
    wait_job(&d, job["job_id"].as_str().unwrap(), "done", |j| j["status"] == "done");
    sim.expect_deliveries(2);
}

#[test]
fn standby_role_keeps_every_runner_idle() {
    let d = start(json!({ "role": "standby", "renewal": { "retention_days": 1 } }));
    let tj = timed_jobs(&d);
    assert_eq!(tj["role"], "standby");
    let lc = auto_conversation(&d, "chatgpt", "conv-standby", None, Some(7));
    ingest(
        &d,
        &message("chatgpt", "conv-standby", "msg-standby", "assistant", "standby text", None, Some(7)),
    );
    let db = d.db_path();
    let seed = due_job("job-standby", &lc, "[renewal] standby");
    seed_job(&db, &seed);
    let mut old = JobSeed::new("job-standby-old", "done");
    old.finished_at = Some(now_ms() - 10 * 86_400_000);
    seed_job(&db, &old);

    // The ticker ticks (next_run_at keeps moving) but runs nothing.
    let mut seen = BTreeSet::new();
    let ok = wait_until(WAIT, || {
        seen.insert(runner(&d, "renewal.projector")["next_run_at"].as_i64().unwrap_or(0));
        seen.len() >= 6
    });
    assert!(ok, "the ticker did not tick: {seen:?}");
    for r in timed_jobs(&d)["runners"].as_array().unwrap() {
        assert_eq!(r["runs"], 0, "{r}");
        assert_eq!(r["last_result"], Value::Null, "{r}");
        assert_eq!(r["last_started_at"], Value::Null, "{r}");
    }
    assert!(jobs_for_message(&d, "msg-standby").is_empty());
    let pending = job(&d, "job-standby");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["updated_at"].as_i64(), Some(seed.updated_at));
    assert_eq!(job(&d, "job-standby-old")["status"], "done", "the pruner is idle too");
    assert!(log_lines(&d).is_empty(), "no runner logged: {}", log_tail(&d, 10));
}

#[test]
fn repeated_assistant_message_pauses_an_auto_conversation_on_ingest() {
    let d = start(json!({ "renewal": { "repeat_pause_threshold": 3 } }));
    let lc = auto_conversation(&d, "chatgpt", "conv-loop", None, Some(8));
    let lc_other = auto_conversation(&d, "chatgpt", "conv-noloop", None, Some(9));
    // Keep the runners out of it: the pause comes from the ingest alone.
    pause_settled(&d);
    let post = |conv: &str, mid: &str, text: &str| {
        ingest(&d, &message("chatgpt", conv, mid, "assistant", text, None, Some(8)))
    };
    post("conv-loop", "loop-1", "hello  world");
    assert_eq!(conversation(&d, &lc)["repeated_message_count"], 1);
    post("conv-loop", "loop-2", "hello world");
    let conv = conversation(&d, &lc);
    assert_eq!(conv["repeated_message_count"], 2);
    assert_eq!(conv["automation_status"], "auto");
    // The same text after whitespace collapsing: the third one pauses.
    post("conv-loop", "loop-3", " hello\n\tworld ");
    let conv = conversation(&d, &lc);
    assert_eq!(conv["automation_status"], "paused", "{conv}");
    assert_eq!(conv["pause_reason"], "repeated_message");
    assert_eq!(conv["repeated_message_count"], 3);
    assert!(conv["paused_at"].is_i64());

    // A different text in between resets the count.
    for (i, text) in ["a", "a", "b", "a", "a"].iter().enumerate() {
        post("conv-noloop", &format!("noloop-{i}"), text);
    }
    let other = conversation(&d, &lc_other);
    assert_eq!(other["repeated_message_count"], 2);
    assert_eq!(other["automation_status"], "auto");

    // Switching back to auto resets every counter.
    let conv = set_status(&d, &lc, "auto");
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["repeated_message_count"], 0);
    assert_eq!(conv["repeated_renewal_count"], 0);
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["pause_reason"], Value::Null);
    assert_eq!(conv["paused_at"], Value::Null);
}

#[test]
fn end_to_end_message_auto_job_delivery_done() {
    let d = start(json!({}));
    // The plugin reports a final message of a conversation nobody automated.
    let mut first = Sim::connect(
        &d,
        "firefox-e2e",
        &[
            "--tab",
            "17:chatgpt:conv-e2e",
            "--conversation",
            "conv-e2e",
            "--message-id",
            "msg-e2e-1",
            "--message",
            "First answer from the page",
        ],
    );
    assert!(wait_until(WAIT, || d.get("/v1/messages/msg-e2e-1").status == 200), "message not ingested");
    let links = d.get("/v1/renewal/links?remote_conversation_id=conv-e2e").data();
    let lc = links["links"][0]["local_conversation_id"].as_str().unwrap().to_string();
    assert_eq!(links["links"][0]["client_id"], "firefox-e2e");
    let skipped = wait_log(&d, "msg-e2e-1 examined", |l| l["details"]["message_id"] == "msg-e2e-1");
    assert_eq!(skipped["result"], "automation_manual");

    // The person switches it to auto; the plugin reconnects and reports the
    // next answer, which is renewed into the same tab.
    assert_eq!(set_status(&d, &lc, "auto")["automation_status"], "auto");
    first.kill();
    wait_client_gone(&d, "firefox-e2e");
    let text = "Second   answer\nfrom the page";
    let sim = Sim::connect(
        &d,
        "firefox-e2e",
        &[
            "--tab",
            "17:chatgpt:conv-e2e",
            "--conversation",
            "conv-e2e",
            "--message-id",
            "msg-e2e-2",
            "--message",
            text,
        ],
    );
    let job = wait_job_for_message(&d, "msg-e2e-2");
    let job_id = job["job_id"].as_str().unwrap().to_string();
    assert_eq!(job["local_conversation_id"], lc.as_str());
    let job = wait_job(&d, &job_id, "done", |j| j["status"] == "done");
    assert_eq!(job["attempt_count"], 1);

    // The default template: "[renewal] {summary}\n{link}".
    let link = d.get("/v1/messages/msg-e2e-2").data()["artifact_url"].as_str().unwrap().to_string();
    let expected = format!("[renewal] Second answer from the page\n{link}");
    assert_eq!(job["payload_text"], expected.as_str());
    sim.wait_deliveries(1);
    let frames = sim.deliveries_for("msg-e2e-2");
    assert_eq!(frames.len(), 1, "{:?}", sim.transcript());
    assert_eq!(frames[0]["message_text"], expected.as_str());
    assert_eq!(frames[0]["tab_id"], 17);
    assert_eq!(frames[0]["conversation_id"], "conv-e2e");
    assert_eq!(frames[0]["local_conversation_id"], lc.as_str());

    // Visible through the API...
    let conv = conversation(&d, &lc);
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["execution_state"], "idle");
    assert_eq!(conv["last_message_id"], "msg-e2e-2");
    assert_eq!(conv["repeated_renewal_count"], 1);
    assert_eq!(conv["active_link"]["target_id"], "tab:17");
    let sys = d.get("/v1/system").data();
    assert_eq!(sys["counts"]["jobs"]["done"], 1);
    assert_eq!(sys["clients"], 1);
    let done = d.get(&format!("/v1/renewal/jobs?status=done&local_conversation_id={lc}")).data();
    assert_eq!(done["count"], 1);

    // ...and through the JSONL log the job points at.
    wait_job_line(&d, &job_id, "job_completed");
    let log_path = job["log_path"].as_str().unwrap();
    let in_file: Vec<Value> = std::fs::read_to_string(log_path)
        .expect("the job's log file")
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let projected = in_file
        .iter()
        .find(|l| l["stage"] == "job_projected" && l["details"]["message_id"] == "msg-e2e-2")
        .expect("job_projected in the job's log file");
    assert_eq!(projected["details"]["job_id"], job_id.as_str());
    let stages: Vec<&str> = in_file
        .iter()
        .filter(|l| l["details"]["job_id"] == job_id.as_str())
        .map(|l| l["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["job_projected", "job_attempt_started", "job_completed"], "{in_file:?}");
}
