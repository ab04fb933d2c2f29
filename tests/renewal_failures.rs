//! What happens when a delivery does not succeed (docs/RENEWAL.md "The dispatcher"
//! steps 6, 9, 10, 12, "Loop protection"): plugin failures retried with
//! exponential backoff (± jitter) until `max_attempts`, timeouts, a plugin
//! disconnecting mid-delivery, policy refusals as deferrals, and the pauses
//! of loop protection (failures, repeated renewals).

mod renewal_support;
mod support;

use renewal_support::*;
use serde_json::{json, Value};
use support::{now_ms, seed_job, wait_until};

#[test]
fn plugin_failures_retry_with_exponential_backoff_until_max_attempts() {
    let d = start(json!({
        "renewal": { "retry_base_delay_ms": 200, "retry_max_delay_ms": 500,
                     "failure_pause_threshold": 100 }
    }));
    let sim = Sim::connect(&d, "firefox-fail", &["--mode", "fail:tab_closed"]);
    let db = d.db_path();
    seed_route(&db, "lc-fail", "chatgpt", "auto", Some("firefox-fail"), Some(2));
    let mut j = due_job("job-fail", "lc-fail", "[renewal] failing");
    j.max_attempts = 4; // a job's own limit (the config's applies at projection)
    seed_job(&db, &j);

    let job = wait_job(&d, "job-fail", "failed", |j| j["status"] == "failed");
    assert_eq!(job["attempt_count"], 4);
    assert_eq!(job["max_attempts"], 4);
    assert_eq!(job["last_error"], "tab_closed");
    assert_eq!(job["next_attempt_at"], Value::Null);
    assert!(job["finished_at"].is_i64());

    wait_job_line(&d, "job-fail", "job_failed");
    let lines = job_lines(&d, "job-fail");
    let stages: Vec<&str> = lines.iter().map(|l| l["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        [
            "job_attempt_started",
            "job_retry_scheduled",
            "job_attempt_started",
            "job_retry_scheduled",
            "job_attempt_started",
            "job_retry_scheduled",
            "job_attempt_started",
            "job_failed"
        ]
    );
    // min(retry_max_delay_ms, retry_base_delay_ms * 2^(attempt-1)), no jitter.
    for (i, expected) in [200i64, 400, 500].into_iter().enumerate() {
        let retry = &lines[2 * i + 1];
        assert_eq!(retry["result"], "tab_closed");
        assert_eq!(retry["details"]["attempt"], i as i64 + 1);
        let at = retry["details"]["next_attempt_at"].as_i64().unwrap();
        assert_scheduled(
            &format!("delay after attempt {}", i + 1),
            at,
            &lines[2 * i],
            retry,
            expected,
            expected,
        );
        assert!(ts(&lines[2 * i + 2]) >= at, "attempt {} started before its time: {lines:?}", i + 2);
    }
    assert_eq!(lines[7]["result"], "tab_closed");
    assert_eq!(lines[7]["details"]["attempt"], 4);
    sim.expect_deliveries(4);
    let conv = conversation(&d, "lc-fail");
    assert_eq!(conv["consecutive_failure_count"], 4);
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["execution_state"], "idle");
}

#[test]
fn retry_delays_are_jittered_within_the_ratio() {
    let d = start(json!({
        "renewal": { "retry_base_delay_ms": 1000, "retry_max_delay_ms": 1000, "retry_jitter_ratio": 0.5 }
    }));
    let _sim = Sim::connect(&d, "firefox-jitter", &["--mode", "fail:tab_closed"]);
    let db = d.db_path();
    let mut off_centre = 0;
    for i in 0..6 {
        let lc = format!("lc-jitter-{i}");
        seed_route(&db, &lc, "chatgpt", "auto", Some("firefox-jitter"), Some(i + 1));
        seed_job(&db, &due_job(&format!("job-jitter-{i}"), &lc, "[renewal] jitter"));
    }
    for i in 0..6 {
        let id = format!("job-jitter-{i}");
        let line =
            wait_log(&d, &format!("first retry of {id}"), |l| is_job_line(l, &id, "job_retry_scheduled"));
        // (A job may first be deferred for the 1 ms policy backoff another
        // job's failure left on the shared target.)
        let lines = job_lines(&d, &id);
        let start = lines.iter().find(|l| l["stage"] == "job_attempt_started").unwrap();
        let at = line["details"]["next_attempt_at"].as_i64().unwrap();
        assert_scheduled(&format!("{id} jittered delay"), at, start, &line, 500, 1500);
        // The delay was drawn between the attempt's start and its retry
        // line: it is provably off the 1000 ms centre when that whole span
        // is on one side of it. Without jitter it never is, however the
        // machine is loaded; with it, a job misses only when its delay
        // lands within that span (a few ms) of the centre.
        let (earliest, latest) = (at - ts(&line), at - ts(start));
        if latest < 1000 || earliest > 1000 {
            off_centre += 1;
        }
    }
    assert!(off_centre > 0, "no retry delay of six was off the unjittered 1000 ms");
}

#[test]
fn silent_plugin_times_out_after_execution_timeout() {
    let d = start(json!({ "renewal": { "execution_timeout_ms": 400 } }));
    let sim = Sim::connect(&d, "firefox-silent", &["--mode", "silent"]);
    let db = d.db_path();
    seed_route(&db, "lc-silent", "chatgpt", "auto", Some("firefox-silent"), Some(3));
    let mut j = due_job("job-silent", "lc-silent", "[renewal] silent");
    j.max_attempts = 1;
    seed_job(&db, &j);

    let job = wait_job(&d, "job-silent", "failed", |j| j["status"] == "failed");
    assert_eq!(job["last_error"], "delivery_timeout");
    assert_eq!(job["attempt_count"], 1);
    let frames = sim.expect_deliveries(1);
    assert_eq!(frames[0]["timeout_ms"], 400, "the frame carries execution_timeout_ms");
    wait_job_line(&d, "job-silent", "job_failed");
    let lines = job_lines(&d, "job-silent");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["stage"], "job_failed");
    assert_eq!(lines[1]["result"], "delivery_timeout");
    assert_between("time to the timeout", ts(&lines[1]) - ts(&lines[0]), 400 - 20, 400 + 2000);
    let conv = conversation(&d, "lc-silent");
    assert_eq!(conv["execution_state"], "idle");
    assert_eq!(conv["last_error"], "delivery_timeout");
}

#[test]
fn upstream_http_error_is_a_failure_with_its_status() {
    let d = start(json!({}));
    let _sim = Sim::connect(&d, "firefox-http", &["--mode", "http:503"]);
    let db = d.db_path();
    seed_route(&db, "lc-http", "chatgpt", "auto", Some("firefox-http"), Some(3));
    let mut j = due_job("job-http", "lc-http", "[renewal] http");
    j.max_attempts = 1;
    seed_job(&db, &j);
    let job = wait_job(&d, "job-http", "failed", |j| j["status"] == "failed");
    assert_eq!(job["last_error"], "upstream_http_503");
}

#[test]
fn plugin_disconnecting_mid_delivery_fails_the_attempt_at_once() {
    let d = start(json!({
        "renewal": { "execution_timeout_ms": 20000, "retry_base_delay_ms": 60000 }
    }));
    let mut sim = Sim::connect(&d, "firefox-gone", &["--delay-ms", "30000"]);
    let db = d.db_path();
    seed_route(&db, "lc-gone", "chatgpt", "auto", Some("firefox-gone"), Some(3));
    let mut j = due_job("job-gone", "lc-gone", "[renewal] gone");
    j.max_attempts = 2;
    seed_job(&db, &j);

    sim.wait_deliveries(1);
    // While the plugin holds the delivery, the job runs under the lock.
    let job = wait_job(&d, "job-gone", "running", |j| j["status"] == "running");
    assert!(job["started_at"].is_i64());
    assert_eq!(conversation(&d, "lc-gone")["execution_state"], "renewal_running");

    let killed_at = now_ms();
    sim.kill();
    let job = wait_job(&d, "job-gone", "retried", |j| j["status"] == "pending");
    assert_eq!(job["last_error"], "client_disconnected");
    assert_eq!(job["attempt_count"], 1);
    let line = wait_log(&d, "job_retry_scheduled", |l| is_job_line(l, "job-gone", "job_retry_scheduled"));
    assert_eq!(line["result"], "client_disconnected");
    assert!(
        ts(&line) - killed_at < 3000,
        "the disconnect must end the attempt at once, not after the 20 s timeout ({} ms)",
        ts(&line) - killed_at
    );
    let conv = conversation(&d, "lc-gone");
    assert_eq!(conv["execution_state"], "idle");
    assert_eq!(conv["last_error"], "client_disconnected");
}

#[test]
fn open_circuit_defers_the_retry_without_counting_an_attempt() {
    let d = start(json!({
        "renewal": { "retry_base_delay_ms": 100, "retry_max_delay_ms": 100 },
        "policy": { "circuit_breaker": { "failure_threshold": 1, "open_ms": 60000 } }
    }));
    let sim = Sim::connect(&d, "firefox-circuit", &["--mode", "fail:tab_closed"]);
    let db = d.db_path();
    seed_route(&db, "lc-circuit", "chatgpt", "auto", Some("firefox-circuit"), Some(3));
    let mut j = due_job("job-circuit", "lc-circuit", "[renewal] circuit");
    j.max_attempts = 5;
    seed_job(&db, &j);

    let line = wait_log(&d, "job_deferred", |l| is_job_line(l, "job-circuit", "job_deferred"));
    assert_eq!(line["result"], "circuit_open");
    let lines = job_lines(&d, "job-circuit");
    assert_eq!(lines[0]["stage"], "job_attempt_started");
    assert_eq!(lines[1]["stage"], "job_retry_scheduled");
    let next = line["details"]["next_attempt_at"].as_i64().unwrap();
    // Deferred to the circuit's retry time: open_ms after the failure.
    // The dispatcher adds the refusal's delay to its own clock read, taken
    // just after the policy's, so the deferral may land a few ms later.
    assert_scheduled("deferral to circuit_retry_at", next, &lines[0], &lines[1], 60_000, 60_000 + 250);
    let job = job(&d, "job-circuit");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 1, "the refusal is not an attempt");
    assert_eq!(job["last_error"], "tab_closed");
    assert_eq!(job["next_attempt_at"].as_i64(), Some(next));
    sim.expect_deliveries(1);
    let browser = d.get("/v1/browser").data();
    let target = browser["policy"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["client_id"] == "firefox-circuit")
        .cloned()
        .unwrap_or_else(|| panic!("no policy target: {browser}"));
    assert_eq!(target["circuit_state"], "open");
}

#[test]
fn active_backoff_defers_the_retry() {
    let d = start(json!({
        "renewal": { "retry_base_delay_ms": 100, "retry_max_delay_ms": 100 },
        "policy": { "backoff": { "base_ms": 60000, "max_ms": 60000 } }
    }));
    let sim = Sim::connect(&d, "firefox-backoff", &["--mode", "fail:tab_closed"]);
    let db = d.db_path();
    seed_route(&db, "lc-backoff", "chatgpt", "auto", Some("firefox-backoff"), Some(3));
    let mut j = due_job("job-backoff", "lc-backoff", "[renewal] backoff");
    j.max_attempts = 5;
    seed_job(&db, &j);
    let line = wait_log(&d, "job_deferred", |l| is_job_line(l, "job-backoff", "job_deferred"));
    assert_eq!(line["result"], "backoff_active");
    let next = line["details"]["next_attempt_at"].as_i64().unwrap();
    let lines = job_lines(&d, "job-backoff");
    assert_eq!(lines[1]["stage"], "job_retry_scheduled");
    // Deferred to backoff_until: backoff.base_ms after the failure.
    // The dispatcher adds the refusal's delay to its own clock read, taken
    // just after the policy's, so the deferral may land a few ms later.
    assert_scheduled("deferral to backoff_until", next, &lines[0], &lines[1], 60_000, 60_000 + 250);
    let job = job(&d, "job-backoff");
    assert_eq!(job["attempt_count"], 1);
    assert_eq!(job["status"], "pending");
    sim.expect_deliveries(1);
}

#[test]
fn rate_limit_over_one_second_defers_with_rate_limited() {
    let d = start(json!({
        "policy": { "rate_limit": { "requests_per_minute_per_platform": 1, "window_ms": 60000 } }
    }));
    let sim = Sim::connect(&d, "firefox-rate", &[]);
    let db = d.db_path();
    seed_route(&db, "lc-rate-a", "chatgpt", "auto", Some("firefox-rate"), Some(3));
    seed_route(&db, "lc-rate-b", "chatgpt", "auto", Some("firefox-rate"), Some(4));
    let mut a = due_job("job-rate-a", "lc-rate-a", "[renewal] a");
    a.next_attempt_at = Some(now_ms() - 10);
    seed_job(&db, &a);
    seed_job(&db, &due_job("job-rate-b", "lc-rate-b", "[renewal] b"));

    wait_job(&d, "job-rate-a", "done", |j| j["status"] == "done");
    let line = wait_log(&d, "job_deferred", |l| is_job_line(l, "job-rate-b", "job_deferred"));
    assert_eq!(line["result"], "rate_limited");
    let next = line["details"]["next_attempt_at"].as_i64().unwrap();
    // Admission once a's dispatch leaves the 60 s window; a was admitted just
    // before its attempt started. The dispatcher adds the refusal's delay to
    // its own clock read, taken just after the policy's, so the
    // deferral may land a few milliseconds past a's start + 60 s.
    let a_started = wait_job_line(&d, "job-rate-a", "job_attempt_started");
    assert_between("deferral to the admission time", next - ts(&a_started), 60_000 - 1000, 60_000 + 250);
    let b = job(&d, "job-rate-b");
    assert_eq!(b["status"], "pending");
    assert_eq!(b["attempt_count"], 0);
    assert_eq!(b["last_attempt_at"], Value::Null);
    assert_eq!(b["next_attempt_at"].as_i64(), Some(next));
    sim.expect_deliveries(1);
}

#[test]
fn consecutive_failures_pause_the_conversation_with_execution_failure() {
    let d = start(json!({
        "renewal": { "retry_base_delay_ms": 100, "retry_max_delay_ms": 100,
                     "failure_pause_threshold": 2, "recheck_delay_ms": 100 }
    }));
    let sim = Sim::connect(&d, "firefox-pause", &["--mode", "fail:tab_closed"]);
    let db = d.db_path();
    seed_route(&db, "lc-pause", "chatgpt", "auto", Some("firefox-pause"), Some(3));
    let mut j = due_job("job-pause", "lc-pause", "[renewal] pause");
    j.max_attempts = 10;
    seed_job(&db, &j);

    let conv = wait_conversation(&d, "lc-pause", "paused", |c| c["automation_status"] == "paused");
    assert_eq!(conv["pause_reason"], "execution_failure");
    assert_eq!(conv["consecutive_failure_count"], 2);
    assert_eq!(conv["last_error"], "tab_closed");
    assert!(conv["paused_at"].is_i64(), "{conv}");
    assert_eq!(conv["execution_state"], "idle");
    // The plugins hear of the pause (docs/BRIDGE.md `state_snapshot`).
    let told = |f: &Value| {
        let convs = f["automation_conversations"].as_array().cloned().unwrap_or_default();
        f["type"] == "state_snapshot"
            && convs
                .iter()
                .any(|c| c["local_conversation_id"] == "lc-pause" && c["pause_reason"] == "execution_failure")
    };
    assert!(
        wait_until(WAIT, || sim.received().iter().any(told)),
        "no snapshot of the pause: {:?}",
        sim.transcript()
    );
    let listed = d.get("/v1/renewal/conversations?status=paused").data();
    assert!(
        listed["conversations"].as_array().unwrap().iter().any(|c| c["local_conversation_id"] == "lc-pause"),
        "{listed}"
    );
    let mut retries = Vec::new();
    assert!(wait_until(WAIT, || {
        retries = log_find(&d, |l| is_job_line(l, "job-pause", "job_retry_scheduled"));
        retries.len() >= 2
    }));
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert_eq!(retries[1]["details"]["paused"], "execution_failure");

    // Paused: the job waits (deferred, not attempted).
    let deferred = wait_log(&d, "job_deferred", |l| is_job_line(l, "job-pause", "job_deferred"));
    assert_eq!(deferred["result"], "automation_paused");
    wait_runs(&d, "renewal.dispatcher", 3);
    let job = job(&d, "job-pause");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["attempt_count"], 2);
    sim.expect_deliveries(2);

    // Back to auto: counters reset, attempts resume.
    let conv = set_status(&d, "lc-pause", "auto");
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["pause_reason"], Value::Null);
    assert_eq!(conv["paused_at"], Value::Null);
    sim.wait_deliveries(3);
}

#[test]
fn the_same_summary_renewed_repeatedly_pauses_with_repeated_renewal() {
    let d = start(json!({ "renewal": { "repeat_pause_threshold": 2, "recheck_delay_ms": 100 } }));
    let sim = Sim::connect(&d, "firefox-repeat", &[]);
    let db = d.db_path();
    let t = now_ms() - 60_000;
    // Two assistant messages with the same content (whitespace aside), then
    // a different one. Their payload texts differ by link and id: the loop
    // is still seen, because the renewed summary is what counts.
    seed_message(&db, "msg-rep-1", "chatgpt", "remote-lc-repeat", "assistant", "the same answer", t);
    seed_message(&db, "msg-rep-2", "chatgpt", "remote-lc-repeat", "assistant", "the  same\nanswer", t + 1);
    seed_message(&db, "msg-rep-3", "chatgpt", "remote-lc-repeat", "assistant", "another answer", t + 2);
    seed_route(&db, "lc-repeat", "chatgpt", "auto", Some("firefox-repeat"), Some(3));
    let now = now_ms();
    let jobs: Vec<_> = ["the same answer", "the same answer", "another answer"]
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut j = due_job(
                &format!("job-rep-{}", i + 1),
                "lc-repeat",
                &format!("[renewal] {text}\nhttp://x/msg-rep-{}.txt", i + 1),
            );
            j.message_id = format!("msg-rep-{}", i + 1);
            j.next_attempt_at = Some(now - 10 + i as i64);
            j
        })
        .collect();
    seed_jobs_at_once(&db, &jobs);

    wait_job(&d, "job-rep-2", "done", |j| j["status"] == "done");
    let conv = wait_conversation(&d, "lc-repeat", "paused", |c| c["automation_status"] == "paused");
    assert_eq!(conv["pause_reason"], "repeated_renewal");
    assert_eq!(conv["repeated_renewal_count"], 2);
    assert!(conv["paused_at"].is_i64());
    assert_eq!(job(&d, "job-rep-1")["status"], "done");
    let completed = wait_log(&d, "job_completed job-rep-2", |l| is_job_line(l, "job-rep-2", "job_completed"));
    assert_eq!(completed["details"]["paused"], "repeated_renewal");
    // The third job waits while paused.
    let deferred = wait_log(&d, "job_deferred job-rep-3", |l| is_job_line(l, "job-rep-3", "job_deferred"));
    assert_eq!(deferred["result"], "automation_paused");
    sim.expect_deliveries(2);

    // Back to auto resets the counters; a different summary goes through
    // without pausing.
    let conv = set_status(&d, "lc-repeat", "auto");
    assert_eq!(conv["repeated_renewal_count"], 0);
    wait_job(&d, "job-rep-3", "done", |j| j["status"] == "done");
    let conv = conversation(&d, "lc-repeat");
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["repeated_renewal_count"], 1);
    assert!(wait_until(WAIT, || sim.deliveries().len() == 3));
}

/// A conversation paused while the dispatcher waits out the policy's delay
/// (a 3 s jitter, its lease held): the delivery does not happen, and the
/// claim is put back `automation_paused` without an attempt (docs/RENEWAL.md
/// step 9: after a wait, the conversation's status is read again).
#[test]
fn a_pause_during_the_policy_wait_puts_the_claim_back() {
    let d = start(json!({
        "policy": { "jitter": { "min_ms": 3000, "max_ms": 3000, "mu_ms": 3000, "sigma_ms": 0 } }
    }));
    let sim = Sim::connect(&d, "firefox-pausewait", &[]);
    let db = d.db_path();
    seed_route(&db, "lc-pausewait", "chatgpt", "auto", Some("firefox-pausewait"), Some(8));
    seed_job(&db, &due_job("job-pausewait", "lc-pausewait", "[renewal] wait"));
    // The lease is held from the admission through the wait: the job's
    // fresh read (step 8) is behind it, so only the re-read can see a pause.
    let leased = wait_until(WAIT, || {
        let browser = d.get("/v1/browser").data();
        let targets = browser["policy"]["targets"].as_array().cloned().unwrap_or_default();
        targets.iter().any(|t| t["client_id"] == "firefox-pausewait" && t["in_flight"] == 1)
    });
    assert!(leased, "no lease held for the job: {}", job(&d, "job-pausewait"));
    set_status(&d, "lc-pausewait", "paused");

    let line = wait_job_line(&d, "job-pausewait", "job_deferred");
    assert_eq!(line["result"], "automation_paused", "{line}");
    let j = job(&d, "job-pausewait");
    assert_eq!((j["status"].clone(), j["attempt_count"].clone()), (json!("pending"), json!(0)), "{j}");
    assert!(log_find(&d, |l| is_job_line(l, "job-pausewait", "job_attempt_started")).is_empty());
    assert!(sim.deliveries().is_empty(), "{:?}", sim.transcript());
}
