//! `renewal.dispatcher` (docs/RENEWAL.md "The dispatcher"), one branch per test:
//! delivery through `proxy_delivery` to the plugin simulator, deferrals that
//! do not count an attempt (paused, manual, busy), the cooldown after a
//! success, and the per-tick limit. Failures found before any delivery:
//! `tests/renewal_dispatcher_checks.rs`.
//!
//! Ports of the seed tests "renewal dispatcher sends due pending jobs through
//! browser.proxy_delivery and marks them done" and "renewal dispatcher defers
//! paused jobs and retries transient proxy failures until failed".

mod renewal_support;
mod support;

use renewal_support::*;
use serde_json::{json, Value};
use support::{exec_sql, now_ms, seed_job, JobSeed};

#[test]
fn sends_due_pending_jobs_through_proxy_delivery_and_marks_them_done() {
    let d = start(json!({}));
    let sim = Sim::connect(&d, "firefox-chatgpt", &["--platform", "chatgpt"]);
    let db = d.db_path();
    let now = now_ms();
    seed_message(
        &db,
        "msg_dispatch_success",
        "chatgpt",
        "conv_dispatch_success",
        "assistant",
        "renewal dispatcher success message",
        now - 60_000,
    );
    seed_conversation(&db, "lc_dispatch_success", "chatgpt", "auto", "idle");
    // Earlier failures, which a success resets.
    exec_sql(&db, "UPDATE local_conversations SET consecutive_failure_count = 2 WHERE local_conversation_id = 'lc_dispatch_success'");
    seed_link(
        &db,
        "link_dispatch_success",
        "lc_dispatch_success",
        "chatgpt",
        Some("firefox-chatgpt"),
        "conv_dispatch_success",
        Some(17),
    );
    // The page's organization, which the frame carries (docs/BRIDGE.md).
    exec_sql(
        &db,
        "UPDATE conversation_links SET target_payload = json_set(target_payload, '$.organizationId', 'org-42')
         WHERE link_id = 'link_dispatch_success'",
    );
    let mut seed = due_job("job_dispatch_success", "lc_dispatch_success", "[renewal] keepalive");
    seed.message_id = "msg_dispatch_success".into();
    // A stale snapshot: delivery follows the live link, read afresh.
    seed.target_snapshot = Some(json!({ "stale": true }).to_string());
    seed_job(&db, &seed);

    let job = wait_job(&d, "job_dispatch_success", "finished", |j| {
        j["status"] == "done" || j["status"] == "failed"
    });
    assert_eq!(job["status"], "done", "{job} {:?}", job_story(&d, "job_dispatch_success"));
    assert_eq!(job["attempt_count"], 1);
    assert_eq!(job["last_error"], Value::Null);
    assert_eq!(job["next_attempt_at"], Value::Null);
    let finished = job["finished_at"].as_i64().expect("finished_at");
    let started = job["started_at"].as_i64().expect("started_at");
    assert_eq!(job["last_attempt_at"].as_i64(), Some(started));
    assert!(started <= finished && started >= now, "{job}");
    assert_eq!(job["log_path"], today_log(&d).as_str());

    // Exactly one proxy_delivery, with the payload text and the live route.
    let frames = sim.expect_deliveries(1);
    let f = &frames[0];
    assert_eq!(f["message_text"], "[renewal] keepalive");
    assert_eq!(f["tab_id"], 17);
    assert_eq!(f["platform"], "chatgpt");
    assert_eq!(f["conversation_id"], "conv_dispatch_success");
    assert_eq!(f["page_url"], "https://chatgpt.example/c/conv_dispatch_success");
    assert_eq!(f["organization_id"], "org-42");
    assert_eq!(f["assistant_message_id"], "msg_dispatch_success");
    assert_eq!(f["local_conversation_id"], "lc_dispatch_success");
    assert_eq!(f["timeout_ms"], 5000, "timeout_ms = execution_timeout_ms");
    assert_eq!(f["shell_page"], false);
    assert!(f["request_id"].as_str().unwrap().starts_with("pd_"), "{f}");
    // docs/BRIDGE.md: the message id lower-cased, `_` turned into `-`.
    let plan = f["plan_id"].as_str().unwrap();
    let ms = plan.strip_prefix("renewal_msg-dispatch-success_").unwrap_or_else(|| panic!("plan_id {plan}"));
    assert_between("plan_id time", ms.parse::<i64>().unwrap(), started, finished);
    // The stale snapshot was rebuilt from the link the delivery used.
    let snapshot = &job["target_snapshot"];
    assert_eq!(snapshot["linkId"], "link_dispatch_success", "{job}");
    assert_eq!(snapshot["clientId"], "firefox-chatgpt", "{job}");
    assert_eq!(snapshot["target"]["id"], "tab:17", "{job}");

    // The conversation lock is back to idle, counters updated.
    let conv = conversation(&d, "lc_dispatch_success");
    assert_eq!(conv["execution_state"], "idle");
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["repeated_renewal_count"], 1);
    assert_eq!(conv["cooldown_until"].as_i64(), Some(finished), "cooldown_ms 0: {conv}");

    // The log tells the story.
    wait_job_line(&d, "job_dispatch_success", "job_completed");
    let story = job_story(&d, "job_dispatch_success");
    assert_eq!(
        story,
        vec![
            ("job_attempt_started".to_string(), "attempt_started".to_string()),
            ("job_completed".to_string(), "attempt_succeeded".to_string())
        ]
    );
    let lines = job_lines(&d, "job_dispatch_success");
    assert_eq!(lines[0]["details"]["attempt"], 1);
    assert_eq!(lines[0]["details"]["client_id"], "firefox-chatgpt");
    assert_eq!(lines[0]["details"]["tab_id"], 17);
    assert_eq!(lines[1]["details"]["local_conversation_id"], "lc_dispatch_success");
    let batch = lines[1]["batch_id"].clone();
    let summary = wait_log(&d, "scan_completed of the delivering run", |l| {
        is_stage(l, "renewal.dispatcher", "scan_completed", None) && l["batch_id"] == batch
    });
    assert_eq!(
        summary["details"],
        json!({ "due_jobs": 1, "successful_jobs": 1, "retried_jobs": 0, "failed_jobs": 0, "skipped_jobs": 0 })
    );
}

#[test]
fn defers_paused_jobs_and_retries_transient_proxy_failures_until_failed() {
    let d = start(json!({
        "renewal": { "retry_base_delay_ms": 100, "retry_max_delay_ms": 100, "recheck_delay_ms": 10000 }
    }));
    let sim =
        Sim::connect(&d, "firefox-claude", &["--platform", "claude", "--mode", "fail:no_active_client"]);
    let db = d.db_path();
    let now = now_ms();
    seed_message(
        &db,
        "msg_dispatch_paused",
        "claude",
        "conv_dispatch_paused",
        "assistant",
        "renewal dispatcher paused message",
        now - 60_000,
    );
    seed_message(
        &db,
        "msg_dispatch_retry",
        "claude",
        "conv_dispatch_retry",
        "assistant",
        "renewal dispatcher retry message",
        now - 55_000,
    );
    seed_conversation(&db, "lc_dispatch_paused", "claude", "paused", "idle");
    seed_conversation(&db, "lc_dispatch_retry", "claude", "auto", "idle");
    seed_link(
        &db,
        "link_dispatch_paused",
        "lc_dispatch_paused",
        "claude",
        Some("firefox-claude"),
        "conv_dispatch_paused",
        Some(11),
    );
    seed_link(
        &db,
        "link_dispatch_retry",
        "lc_dispatch_retry",
        "claude",
        Some("firefox-claude"),
        "conv_dispatch_retry",
        Some(12),
    );
    let mut paused = JobSeed::new("job_dispatch_paused", "pending");
    paused.local_conversation_id = "lc_dispatch_paused".into();
    paused.message_id = "msg_dispatch_paused".into();
    paused.payload_kind = "text".into();
    paused.payload = "[renewal] paused".into();
    paused.next_attempt_at = Some(now);
    let mut retry = JobSeed::new("job_dispatch_retry", "pending");
    retry.local_conversation_id = "lc_dispatch_retry".into();
    retry.message_id = "msg_dispatch_retry".into();
    retry.payload_kind = "text".into();
    retry.payload = "[renewal] retry".into();
    retry.max_attempts = 2;
    retry.next_attempt_at = Some(now);
    seed_job(&db, &paused);
    seed_job(&db, &retry);

    let failed = wait_job(&d, "job_dispatch_retry", "failed", |j| j["status"] == "failed");
    assert_eq!(failed["attempt_count"], 2);
    assert_eq!(failed["last_error"], "no_active_client");
    assert_eq!(failed["next_attempt_at"], Value::Null);
    assert!(failed["finished_at"].is_i64());
    wait_job_line(&d, "job_dispatch_retry", "job_failed");
    assert_eq!(
        job_story(&d, "job_dispatch_retry"),
        [
            ("job_attempt_started", "attempt_started"),
            ("job_retry_scheduled", "no_active_client"),
            ("job_attempt_started", "attempt_started"),
            ("job_failed", "no_active_client"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let lines = job_lines(&d, "job_dispatch_retry");
    let retry_at = lines[1]["details"]["next_attempt_at"].as_i64().unwrap();
    assert_scheduled("retry delay (retry_base_delay_ms 100)", retry_at, &lines[0], &lines[1], 100, 100);
    assert_eq!(lines[1]["details"]["attempt"], 1);
    assert!(ts(&lines[2]) >= retry_at, "second attempt before its time: {lines:?}");
    assert_eq!(lines[3]["details"]["attempt"], 2);
    assert_eq!(lines[3]["details"]["terminal"], false);

    // The paused conversation's job: deferred, no attempt counted, rechecked
    // after max(recheck_delay_ms, interval_ms) = 10 s.
    let deferred = wait_log(&d, "job_deferred for the paused job", |l| {
        is_job_line(l, "job_dispatch_paused", "job_deferred")
    });
    assert_eq!(deferred["result"], "automation_paused");
    let next = deferred["details"]["next_attempt_at"].as_i64().unwrap();
    assert_between("recheck delay", next - ts(&deferred), 10_000 - 1000, 10_000);
    let paused = job(&d, "job_dispatch_paused");
    assert_eq!(paused["status"], "pending");
    assert_eq!(paused["attempt_count"], 0);
    assert_eq!(paused["last_attempt_at"], Value::Null);
    assert_eq!(paused["next_attempt_at"].as_i64(), Some(next));

    // Only the auto conversation's job reached the plugin, twice, as text.
    let frames = sim.expect_deliveries(2);
    for f in &frames {
        assert_eq!(f["assistant_message_id"], "msg_dispatch_retry");
        assert_eq!(f["message_text"], "[renewal] retry");
        assert_eq!(f["tab_id"], 12);
    }
}

#[test]
fn manual_deferral_waits_the_longer_of_recheck_delay_and_interval() {
    // recheck_delay_ms < interval_ms: the interval wins.
    let d = start(json!({ "timed_jobs": { "interval_ms": 300 }, "renewal": { "recheck_delay_ms": 10 } }));
    let db = d.db_path();
    seed_route(&db, "lc-manual", "chatgpt", "manual", None, Some(3));
    seed_job(&db, &due_job("job-manual", "lc-manual", "[renewal] manual"));
    let mut lines = Vec::new();
    let ok = support::wait_until(WAIT, || {
        lines = log_find(&d, |l| is_job_line(l, "job-manual", "job_deferred"));
        lines.len() >= 2
    });
    assert!(ok, "two deferrals expected: {lines:?}");
    for l in &lines {
        assert_eq!(l["result"], "automation_manual", "{l}");
    }
    let next = lines[0]["details"]["next_attempt_at"].as_i64().unwrap();
    // (a delay of 10 ms, the recheck_delay_ms, would be below the bound)
    assert_between("recheck delay = interval", next - ts(&lines[0]), 300 - 250, 300);
    assert!(ts(&lines[1]) >= next, "rechecked before its time: {lines:?}");
    let job = job(&d, "job-manual");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 0);
    assert_eq!(job["last_attempt_at"], Value::Null);
    assert_eq!(job["last_error"], Value::Null);
}

#[test]
fn busy_conversation_defers_with_execution_busy_until_idle() {
    let d = start(json!({}));
    let sim = Sim::connect(&d, "firefox-busy", &[]);
    let db = d.db_path();
    seed_conversation(&db, "lc-busy", "chatgpt", "auto", "instruction_running");
    seed_link(&db, "link-busy", "lc-busy", "chatgpt", Some("firefox-busy"), "remote-busy", Some(8));
    seed_job(&db, &due_job("job-busy", "lc-busy", "[renewal] busy"));

    let line = wait_log(&d, "job_deferred for job-busy", |l| is_job_line(l, "job-busy", "job_deferred"));
    assert_eq!(line["result"], "execution_busy");
    let next = line["details"]["next_attempt_at"].as_i64().unwrap();
    assert_between("recheck delay", next - ts(&line), 10_000 - 1000, 10_000);
    let job = job(&d, "job-busy");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 0);
    assert_eq!(job["next_attempt_at"].as_i64(), Some(next));
    assert!(sim.deliveries().is_empty(), "{:?}", sim.deliveries());
    // The other automation's lock is untouched.
    assert_eq!(conversation(&d, "lc-busy")["execution_state"], "instruction_running");

    // Lock released, job due again: delivered.
    exec_sql(
        &db,
        &format!(
            "UPDATE local_conversations SET execution_state = 'idle' WHERE local_conversation_id = 'lc-busy';
             UPDATE renewal_jobs SET next_attempt_at = {} WHERE job_id = 'job-busy';",
            now_ms()
        ),
    );
    let job = wait_job(&d, "job-busy", "done", |j| j["status"] == "done");
    assert_eq!(job["attempt_count"], 1);
    sim.expect_deliveries(1);
}

#[test]
fn cooldown_after_a_successful_renewal_skips_new_messages() {
    let d = start(json!({ "renewal": { "cooldown_ms": 600000 } }));
    let _sim = Sim::connect(&d, "firefox-cool", &[]);
    let lc = auto_conversation(&d, "chatgpt", "conv-cool", Some("firefox-cool"), Some(4));
    ingest(
        &d,
        &message("chatgpt", "conv-cool", "msg-cool-1", "assistant", "first", Some("firefox-cool"), Some(4)),
    );
    let job = wait_job_for_message(&d, "msg-cool-1");
    let job = wait_job(&d, job["job_id"].as_str().unwrap(), "done", |j| j["status"] == "done");
    let finished = job["finished_at"].as_i64().unwrap();
    let conv = conversation(&d, &lc);
    assert_eq!(conv["cooldown_until"].as_i64(), Some(finished + 600_000), "{conv}");

    ingest(
        &d,
        &message("chatgpt", "conv-cool", "msg-cool-2", "assistant", "second", Some("firefox-cool"), Some(4)),
    );
    let line = wait_log(&d, "msg-cool-2 examined", |l| {
        l["runner"] == "renewal.projector" && l["details"]["message_id"] == "msg-cool-2"
    });
    assert_eq!(line["stage"], "message_skipped");
    assert_eq!(line["result"], "cooldown");
    assert!(jobs_for_message(&d, "msg-cool-2").is_empty());
}

#[test]
fn takes_at_most_max_tasks_per_tick_oldest_due_first_with_inter_job_jitter() {
    let d = start(json!({
        "timed_jobs": { "max_tasks_per_tick": 2 },
        "renewal": { "inter_job_jitter_ms": [250, 250] }
    }));
    let sim = Sim::connect(&d, "firefox-order", &[]);
    let db = d.db_path();
    seed_route(&db, "lc-order", "chatgpt", "auto", Some("firefox-order"), Some(3));
    let now = now_ms();
    // Inserted out of order (at once); due order is a, b, c, d, e.
    let jobs: Vec<JobSeed> = [("job-e", 10), ("job-a", 50), ("job-c", 30), ("job-b", 40), ("job-d", 20)]
        .into_iter()
        .map(|(id, age)| {
            let mut j = due_job(id, "lc-order", &format!("[renewal] {id}"));
            j.next_attempt_at = Some(now - age);
            j
        })
        .collect();
    seed_jobs_at_once(&db, &jobs);
    for id in ["job-a", "job-b", "job-c", "job-d", "job-e"] {
        wait_job(&d, id, "done", |j| j["status"] == "done");
    }
    // The last run's summary is the last line written about these jobs.
    let last = wait_job_line(&d, "job-e", "job_completed");
    wait_log(&d, "scan_completed of the last run", |l| {
        is_stage(l, "renewal.dispatcher", "scan_completed", None) && l["batch_id"] == last["batch_id"]
    });
    let starts = log_find(&d, |l| is_stage(l, "renewal.dispatcher", "job_attempt_started", None));
    let order: Vec<&str> = starts.iter().map(|l| l["details"]["job_id"].as_str().unwrap()).collect();
    assert_eq!(order, ["job-a", "job-b", "job-c", "job-d", "job-e"], "oldest due first");
    let texts: Vec<Value> = sim.expect_deliveries(5).iter().map(|f| f["message_text"].clone()).collect();
    assert_eq!(texts, ["job-a", "job-b", "job-c", "job-d", "job-e"].map(|j| json!(format!("[renewal] {j}"))));
    let runs = log_find(&d, |l| is_stage(l, "renewal.dispatcher", "scan_completed", None));
    assert!(runs.len() >= 3, "five jobs, two per run: {runs:?}");
    let mut delivered = 0;
    for r in &runs {
        assert!(r["details"]["due_jobs"].as_u64().unwrap() <= 2, "{r}");
        delivered += r["details"]["successful_jobs"].as_u64().unwrap();
    }
    assert_eq!(delivered, 5);
    // Within one run, a pause of inter_job_jitter_ms between two jobs.
    let mut pairs = 0;
    for w in starts.windows(2) {
        if w[0]["batch_id"] == w[1]["batch_id"] {
            pairs += 1;
            assert!(ts(&w[1]) - ts(&w[0]) >= 250, "no inter-job pause: {w:?}");
        }
    }
    assert!(pairs >= 1, "no run delivered two jobs: {starts:?}");
}
