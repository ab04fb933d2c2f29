//! `renewal.dispatcher`'s checks before any delivery (docs/RENEWAL.md "The
//! dispatcher", steps 1, 4, 5 and 6), one branch per test: a missing
//! conversation and an unusable payload fail the job for good and nothing
//! is sent; no link, no route and no client are failed attempts, retried
//! with a backoff that grows with the attempt number. Deliveries and
//! deferrals: `tests/renewal_dispatcher.rs`.

mod renewal_support;
mod support;

use renewal_support::*;
use serde_json::{json, Value};
use support::{exec_sql, now_ms, seed_job, JobSeed};

#[test]
fn missing_conversation_fails_the_job_for_good() {
    let d = start(json!({}));
    seed_job(&d.db_path(), &due_job("job-orphan", "lc-gone", "[renewal] orphan"));
    let job = wait_job(&d, "job-orphan", "failed", |j| j["status"] == "failed");
    assert_eq!(job["last_error"], "missing_local_conversation");
    assert_eq!(job["next_attempt_at"], Value::Null);
    assert!(job["finished_at"].is_i64());
    // The job points at the log file its failure is written to.
    assert_eq!(job["log_path"], today_log(&d).as_str());
    let line = wait_log(&d, "job_failed for job-orphan", |l| is_job_line(l, "job-orphan", "job_failed"));
    assert_eq!(line["result"], "missing_local_conversation");
    assert_eq!(line["details"]["terminal"], true);
    // Terminal: never tried again.
    wait_runs(&d, "renewal.dispatcher", 3);
    assert_eq!(job_lines(&d, "job-orphan").len(), 1);
}

#[test]
fn missing_link_no_route_and_no_client_are_retryable_failures() {
    let d = start(json!({ "renewal": { "retry_base_delay_ms": 60000 } }));
    let db = d.db_path();
    // No link at all.
    seed_conversation(&db, "lc-nolink", "chatgpt", "auto", "idle");
    // A link without a route (no tab), a shell page, a tab that is not positive.
    seed_route(&db, "lc-notab", "chatgpt", "auto", None, None);
    seed_route(&db, "lc-shell", "chatgpt", "auto", None, Some(5));
    exec_sql(
        &db,
        "UPDATE conversation_links SET target_payload = json_set(target_payload, '$.shellPage', json('true'))
         WHERE local_conversation_id = 'lc-shell'",
    );
    seed_route(&db, "lc-tabzero", "chatgpt", "auto", None, Some(5));
    exec_sql(
        &db,
        "UPDATE conversation_links SET target_id = 'tab:0', target_payload = json_set(target_payload, '$.tabId', 0)
         WHERE local_conversation_id = 'lc-tabzero'",
    );
    // A route, but no plugin serves the platform / the linked client is away.
    seed_route(&db, "lc-noclient", "gemini", "auto", None, Some(6));
    seed_route(&db, "lc-offline", "chatgpt", "auto", Some("offline-client"), Some(7));
    let cases = [
        ("lc-nolink", "missing_active_link"),
        ("lc-notab", "route_unavailable"),
        ("lc-shell", "route_unavailable"),
        ("lc-tabzero", "route_unavailable"),
        ("lc-noclient", "no_active_client"),
        ("lc-offline", "no_active_client"),
    ];
    for (lc, _) in cases {
        seed_job(&db, &due_job(&format!("job-{lc}"), lc, "[renewal] text"));
    }
    for (lc, reason) in cases {
        let id = format!("job-{lc}");
        let job = wait_job(&d, &id, "attempted", |j| j["attempt_count"] == 1);
        assert_eq!(job["status"], "pending", "{id}: retryable: {job}");
        assert_eq!(job["last_error"], reason, "{id}");
        let line = wait_log(&d, &format!("job_retry_scheduled for {id}"), |l| {
            is_job_line(l, &id, "job_retry_scheduled")
        });
        assert_eq!(line["result"], reason, "{id}");
        let next = line["details"]["next_attempt_at"].as_i64().unwrap();
        assert_between(&format!("{id} retry delay"), next - ts(&line), 60_000 - 1000, 60_000);
        assert_eq!(job["next_attempt_at"].as_i64(), Some(next), "{id}");
        // The attempt is counted, so it is recorded (RENEWAL.md step 7).
        let at = job["last_attempt_at"].as_i64().unwrap_or_else(|| panic!("{id}: no last_attempt_at: {job}"));
        assert_between(&format!("{id} last_attempt_at"), ts(&line) - at, 0, 5000);
        let conv = conversation(&d, lc);
        assert_eq!(conv["consecutive_failure_count"], 1, "{lc}: {conv}");
        assert_eq!(conv["last_error"], reason, "{lc}");
        assert_eq!(conv["execution_state"], "idle", "{lc}");
        assert_eq!(conv["automation_status"], "auto", "{lc}");
    }
}

/// A failure found before any delivery (here the conversation has no
/// link) backs off by the job's attempt number, as a failed delivery does
/// (docs/RENEWAL.md "Retries, backoff and jitter"): the third attempt waits
/// four times the base delay.
#[test]
fn a_failure_before_delivery_backs_off_by_the_attempt_number() {
    let d = start(json!({ "renewal": { "retry_base_delay_ms": 60000 } }));
    let db = d.db_path();
    seed_conversation(&db, "lc-third", "chatgpt", "auto", "idle");
    let mut j = due_job("job-third", "lc-third", "[renewal] text");
    (j.attempt_count, j.max_attempts) = (2, 5);
    seed_job(&db, &j);
    let job = wait_job(&d, "job-third", "attempted", |j| j["attempt_count"] == 3);
    assert_eq!(
        (job["status"].clone(), job["last_error"].clone()),
        (json!("pending"), json!("missing_active_link"))
    );
    let line = wait_job_line(&d, "job-third", "job_retry_scheduled");
    let next = line["details"]["next_attempt_at"].as_i64().unwrap();
    assert_between("third retry delay", next - ts(&line), 240_000 - 1000, 240_000);
}

#[test]
fn unusable_payloads_fail_terminally_and_are_never_sent() {
    let d = start(json!({ "renewal": { "failure_pause_threshold": 100 } }));
    let sim = Sim::connect(&d, "firefox-payload", &[]);
    let db = d.db_path();
    seed_route(&db, "lc-payload", "chatgpt", "auto", Some("firefox-payload"), Some(9));
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("job-bad-json", "json", "{not json", Some("invalid_payload")),
        ("job-array", "json", "[1,2]", Some("invalid_payload")),
        ("job-string", "json", "\"just a string\"", Some("invalid_payload")),
        ("job-no-text", "json", "{\"kind\":\"renewal.message\"}", Some("missing_payload_text")),
        ("job-blank-text", "json", "{\"text\":\"  \\n \"}", Some("missing_payload_text")),
        ("job-number-text", "json", "{\"text\":5}", Some("missing_payload_text")),
        ("job-blank-plain", "text", " \t\n ", Some("missing_payload_text")),
        ("job-plain", "text", "[renewal] plain text", None),
    ];
    for (id, kind, payload, _) in cases {
        let mut j = JobSeed::new(id, "pending");
        j.local_conversation_id = "lc-payload".into();
        j.payload_kind = kind.to_string();
        j.payload = payload.to_string();
        j.next_attempt_at = Some(now_ms());
        seed_job(&db, &j);
    }
    for (id, _, _, error) in cases {
        let job = wait_job(&d, id, "finished", |j| j["status"] == "done" || j["status"] == "failed");
        match error {
            Some(error) => {
                assert_eq!(job["status"], "failed", "{id}: {job}");
                assert_eq!(job["last_error"], *error, "{id}");
                assert_eq!(job["next_attempt_at"], Value::Null, "{id}");
                assert!(job["finished_at"].is_i64(), "{id}");
                let line = wait_log(&d, &format!("job_failed {id}"), |l| is_job_line(l, id, "job_failed"));
                assert_eq!(line["result"], *error, "{id}");
                assert_eq!(line["details"]["terminal"], true, "{id}");
                assert!(
                    job_lines(&d, id).iter().all(|l| l["stage"] != "job_attempt_started"),
                    "{id} was started: {:?}",
                    job_story(&d, id)
                );
            }
            None => assert_eq!(job["status"], "done", "{id}: {job}"),
        }
    }
    let frames = sim.expect_deliveries(1);
    assert_eq!(frames[0]["message_text"], "[renewal] plain text");
}
