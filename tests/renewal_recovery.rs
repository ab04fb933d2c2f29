//! Recovery at start (docs/RENEWAL.md "Recovery at start"): execution locks left
//! by a crash are released, interrupted (`running`) jobs go back to
//! `pending` after the recovery delay, `/v1/timed-jobs` shows the counts, and
//! a delivery cut short by `kill -9` is sent exactly once more after the
//! restart (at-least-once, with the delay as the guard).
//!
//! Port of the seed test "ConductorRuntime startup recovers stale automation
//! locks and running renewal jobs".

mod renewal_support;
mod support;

use renewal_support::*;
use serde_json::{json, Value};
use support::{exec_sql, now_ms, seed_job, JobSeed};

fn running_job(job_id: &str, lc: &str, message_id: &str, next_attempt_at: Option<i64>) -> JobSeed {
    let now = now_ms();
    let mut j = JobSeed::new(job_id, "running");
    j.local_conversation_id = lc.into();
    j.message_id = message_id.into();
    j.payload_kind = "text".into();
    j.payload = "[renew]".into();
    j.attempt_count = 1;
    j.next_attempt_at = next_attempt_at;
    j.started_at = Some(now - 10_000);
    j.last_attempt_at = Some(now - 10_000);
    j.created_at = now - 10_000;
    j.updated_at = now - 10_000;
    j
}

#[test]
fn startup_recovers_stale_automation_locks_and_running_renewal_jobs() {
    let mut d =
        start(json!({ "timed_jobs": { "interval_ms": 100 }, "renewal": { "recovery_delay_ms": 60000 } }));
    // Nothing to recover on a fresh state dir.
    let first = timed_jobs(&d)["last_recovery"].clone();
    assert_eq!(first["recovered_execution_state_count"], 0);
    assert_eq!(first["requeued_renewal_job_count"], 0);
    assert_eq!(first["recovery_next_attempt_at"], Value::Null);
    assert!(first["at"].is_i64());
    d.stop();

    // What a crash leaves behind.
    let db = d.db_path();
    let now = now_ms();
    let far = now + 7_200_000;
    seed_message(
        &db,
        "msg-runtime-recovery",
        "claude",
        "conv-runtime-recovery",
        "assistant",
        "runtime recovery message",
        now - 30_000,
    );
    seed_conversation(&db, "lc-runtime-recovery", "claude", "auto", "renewal_running");
    seed_conversation(&db, "lc-instruction", "claude", "auto", "instruction_running");
    seed_conversation(&db, "lc-idle", "claude", "auto", "idle");
    exec_sql(
        &db,
        &format!(
            "UPDATE local_conversations SET updated_at = {} WHERE local_conversation_id = 'lc-runtime-recovery';
             UPDATE local_conversations SET updated_at = {far} WHERE local_conversation_id = 'lc-instruction';
             UPDATE local_conversations SET updated_at = 1000 WHERE local_conversation_id = 'lc-idle';",
            now - 20_000
        ),
    );
    seed_job(&db, &running_job("job-runtime-recovery", "lc-runtime-recovery", "msg-runtime-recovery", None));
    // A running job whose next attempt is already later keeps it.
    seed_job(&db, &running_job("job-later", "lc-instruction", "msg-later", Some(far)));
    let mut pending = JobSeed::new("job-untouched", "pending");
    pending.local_conversation_id = "lc-idle".into();
    seed_job(&db, &pending);

    let t0 = now_ms();
    d.restart();
    let t1 = now_ms();

    let conv = conversation(&d, "lc-runtime-recovery");
    assert_eq!(conv["execution_state"], "idle");
    assert_between("updated_at = max(updated_at, now)", conv["updated_at"].as_i64().unwrap(), t0, t1);
    let conv = conversation(&d, "lc-instruction");
    assert_eq!(conv["execution_state"], "idle");
    assert_eq!(conv["updated_at"].as_i64(), Some(far), "a later updated_at is kept");
    assert_eq!(conversation(&d, "lc-idle")["updated_at"], 1000, "idle conversations are not touched");

    let job = job(&d, "job-runtime-recovery");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["finished_at"], Value::Null);
    assert_eq!(job["attempt_count"], 1, "attempts are kept");
    let next = job["next_attempt_at"].as_i64().unwrap();
    assert_between("next_attempt_at = now + recovery_delay_ms", next, t0 + 60_000, t1 + 60_000);
    let later = self::job(&d, "job-later");
    assert_eq!(later["status"], "pending");
    assert_eq!(later["next_attempt_at"].as_i64(), Some(far));
    let untouched = self::job(&d, "job-untouched");
    assert_eq!(untouched["updated_at"].as_i64(), Some(pending.updated_at));
    assert_eq!(untouched["next_attempt_at"].as_i64(), pending.next_attempt_at);

    let recovery = timed_jobs(&d)["last_recovery"].clone();
    assert_eq!(recovery["recovered_execution_state_count"], 2, "{recovery}");
    assert_eq!(recovery["requeued_renewal_job_count"], 2, "{recovery}");
    assert_eq!(recovery["recovery_next_attempt_at"].as_i64(), Some(next));
    assert_between("last_recovery.at", recovery["at"].as_i64().unwrap(), t0, t1);

    // Shown for this start only: the next start has nothing to recover.
    d.restart();
    let recovery = timed_jobs(&d)["last_recovery"].clone();
    assert_eq!(recovery["recovered_execution_state_count"], 0, "{recovery}");
    assert_eq!(recovery["requeued_renewal_job_count"], 0, "{recovery}");
    assert_eq!(recovery["recovery_next_attempt_at"], Value::Null);
}

#[test]
fn recovery_delay_is_at_least_the_interval() {
    let mut d =
        start(json!({ "timed_jobs": { "interval_ms": 5000 }, "renewal": { "recovery_delay_ms": 10 } }));
    d.stop();
    let db = d.db_path();
    seed_conversation(&db, "lc-int", "chatgpt", "auto", "renewal_running");
    seed_job(&db, &running_job("job-int", "lc-int", "msg-int", None));
    let t0 = now_ms();
    d.restart();
    let t1 = now_ms();
    let job = job(&d, "job-int");
    assert_eq!(job["status"], "pending");
    assert_between(
        "max(recovery_delay_ms, interval_ms)",
        job["next_attempt_at"].as_i64().unwrap(),
        t0 + 5000,
        t1 + 5000,
    );
}

#[test]
fn kill_9_during_delivery_then_restart_delivers_exactly_once_more() {
    let recovery_ms = 2500;
    let mut d = start(json!({
        "timed_jobs": { "interval_ms": 100 },
        "renewal": { "recovery_delay_ms": recovery_ms, "execution_timeout_ms": 20000 }
    }));
    // A plugin that takes the delivery and never answers: the job stays
    // `running` with the conversation locked.
    let mut silent = Sim::connect(&d, "firefox-crash", &["--mode", "silent"]);
    let lc = auto_conversation(&d, "chatgpt", "conv-crash", Some("firefox-crash"), Some(21));
    ingest(
        &d,
        &message(
            "chatgpt",
            "conv-crash",
            "msg-crash",
            "assistant",
            "answer before the crash",
            Some("firefox-crash"),
            Some(21),
        ),
    );
    let job_id = wait_job_for_message(&d, "msg-crash")["job_id"].as_str().unwrap().to_string();
    silent.wait_deliveries(1);
    let job = wait_job(&d, &job_id, "running", |j| j["status"] == "running");
    assert!(job["started_at"].is_i64());
    assert_eq!(conversation(&d, &lc)["execution_state"], "renewal_running");

    d.kill9();
    silent.kill();
    let t0 = now_ms();
    d.restart();
    let t1 = now_ms();

    // Recovered before anything could act on it.
    let job = self::job(&d, &job_id);
    let next = job["next_attempt_at"].as_i64().unwrap();
    assert!(now_ms() < next, "inspected too late for the checks below to mean anything");
    assert_eq!(job["status"], "pending", "{job}");
    assert_eq!(job["started_at"], Value::Null);
    assert_eq!(job["finished_at"], Value::Null);
    assert_between("next_attempt_at", next, t0 + recovery_ms, t1 + recovery_ms);
    let conv = conversation(&d, &lc);
    assert_eq!(conv["execution_state"], "idle", "lock released: {conv}");
    assert_eq!(conv["automation_status"], "auto");
    let recovery = timed_jobs(&d)["last_recovery"].clone();
    assert_eq!(recovery["recovered_execution_state_count"], 1, "{recovery}");
    assert_eq!(recovery["requeued_renewal_job_count"], 1, "{recovery}");
    assert_eq!(recovery["recovery_next_attempt_at"].as_i64(), Some(next));

    // A working plugin comes back: the job is delivered once more, once.
    let sim = Sim::connect(&d, "firefox-crash", &[]);
    let done = wait_job(&d, &job_id, "done", |j| j["status"] == "done");
    wait_job_line(&d, &job_id, "job_completed");
    let started = job_lines(&d, &job_id)
        .into_iter()
        .filter(|l| l["stage"] == "job_attempt_started")
        .map(|l| ts(&l))
        .max()
        .unwrap();
    assert!(started >= next, "redelivered before the recovery delay: {started} < {next}");
    assert_eq!(done["attempt_count"], 1);
    wait_runs(&d, "renewal.dispatcher", 3);
    sim.wait_deliveries(1);
    let frames = sim.deliveries_for("msg-crash");
    assert_eq!(frames.len(), 1, "exactly one redelivery: {:?}", sim.transcript());
    assert_eq!(frames[0]["message_text"], done["payload_text"]);
    assert_eq!(self::job(&d, &job_id)["status"], "done");
    assert_eq!(conversation(&d, &lc)["execution_state"], "idle");
}

#[test]
fn clean_stop_during_a_delivery_leaves_no_running_job() {
    let mut d = start(json!({ "renewal": { "execution_timeout_ms": 30000 } }));
    let mut silent = Sim::connect(&d, "firefox-stop", &["--mode", "silent"]);
    let lc = auto_conversation(&d, "chatgpt", "conv-stop", Some("firefox-stop"), Some(6));
    ingest(
        &d,
        &message("chatgpt", "conv-stop", "msg-stop", "assistant", "stop now", Some("firefox-stop"), Some(6)),
    );
    let job_id = wait_job_for_message(&d, "msg-stop")["job_id"].as_str().unwrap().to_string();
    silent.wait_deliveries(1);
    wait_job(&d, &job_id, "running", |j| j["status"] == "running");

    let status = d.stop();
    assert!(status.success(), "clean exit: {status}");
    silent.kill();
    // The interrupted delivery is neither the job's failure nor the
    // target's: the claim was put back before the exit, no attempt counted
    // (the next start delivers it again). No HTTP request was open, so this
    // is the path where closing the plugins used to fail the delivery as
    // `client_disconnected` and charge both.
    let conn = support::db(&d.db_path());
    let (status, attempts, error): (String, i64, Option<String>) = conn
        .query_row(
            "SELECT status, attempt_count, last_error FROM renewal_jobs WHERE job_id = ?1",
            [&job_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((status.as_str(), attempts, error), ("pending", 0, None));
    let deferred = wait_job_line(&d, &job_id, "job_deferred");
    assert_eq!(deferred["result"], "shutting_down", "{deferred}");
    // The frame had reached the plugin, which may have delivered it: due
    // again only after the recovery delay (60 s by default), as after a
    // crash, not on the next start's first tick — and not later either.
    let next = deferred["details"]["next_attempt_at"].as_i64().unwrap();
    assert!(
        (59_000..=61_000).contains(&(next - ts(&deferred))),
        "not due after the recovery delay: {deferred}"
    );
    let policy: String = conn
        .query_row(
            "SELECT value_json FROM browser_request_policy_state WHERE state_key = 'global'",
            [],
            |r| r.get(0),
        )
        .expect("the policy state, saved at the stop");
    assert!(policy.contains("firefox-stop"), "{policy}");
    assert!(!policy.contains("client_disconnected"), "the target was charged a failure: {policy}");
    let state: String = conn
        .query_row(
            "SELECT execution_state FROM local_conversations WHERE local_conversation_id = ?1",
            [&lc],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "idle");
    d.restart();
    assert_eq!(timed_jobs(&d)["last_recovery"]["requeued_renewal_job_count"], 0);
}

/// A stop while the dispatcher waits out a long policy jitter: the wait ends
/// at once (the stop is not held up by it), nothing is sent, and the job is
/// back to pending without an attempt, due at once (nothing reached the
/// plugin).
#[test]
fn clean_stop_during_a_policy_wait_sends_nothing_and_is_not_held_up() {
    let mut d = start(json!({
        "policy": { "jitter": { "min_ms": 30000, "max_ms": 30000, "mu_ms": 30000, "sigma_ms": 0 } }
    }));
    let sim = Sim::connect(&d, "firefox-wait", &[]);
    let db = d.db_path();
    seed_route(&db, "lc-wait", "chatgpt", "auto", Some("firefox-wait"), Some(8));
    seed_job(&db, &due_job("job-wait", "lc-wait", "[renewal] wait"));
    wait_job(&d, "job-wait", "running", |j| j["status"] == "running");

    // A 30 s wait would outlast the harness's 10 s stop deadline.
    let status = d.stop();
    assert!(status.success(), "clean exit: {status}");
    let line = wait_job_line(&d, "job-wait", "job_deferred");
    assert_eq!(line["result"], "shutting_down", "{line}");
    assert!(line["details"]["next_attempt_at"].as_i64().unwrap() <= ts(&line) + 10, "{line}");
    assert!(log_find(&d, |l| is_job_line(l, "job-wait", "job_attempt_started")).is_empty());
    let conn = support::db(&db);
    let (status, attempts): (String, i64) = conn
        .query_row("SELECT status, attempt_count FROM renewal_jobs WHERE job_id = 'job-wait'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
    assert!(sim.deliveries().is_empty(), "{:?}", sim.transcript());
}

/// A stop during the pause between two deliveries (`inter_job_jitter_ms`)
/// ends the pause: the next job is not sent and goes back to pending.
#[test]
fn clean_stop_during_the_inter_job_pause_is_not_held_up() {
    let mut d = start(json!({ "renewal": { "inter_job_jitter_ms": [30000, 30000] } }));
    let sim = Sim::connect(&d, "firefox-pause-stop", &[]);
    let db = d.db_path();
    for (lc, tab) in [("lc-first", 3), ("lc-second", 4)] {
        seed_route(&db, lc, "chatgpt", "auto", Some("firefox-pause-stop"), Some(tab));
    }
    seed_due_in_order(&db, &[("job-first", "lc-first"), ("job-second", "lc-second")]);
    wait_job(&d, "job-first", "done", |j| j["status"] == "done");

    // A 30 s pause would outlast the harness's 10 s stop deadline.
    let status = d.stop();
    assert!(status.success(), "clean exit: {status}");
    let line = wait_job_line(&d, "job-second", "job_deferred");
    assert_eq!(line["result"], "shutting_down", "{line}");
    let attempts = job_column_i64(&db, "job-second", "attempt_count");
    assert_eq!(attempts, Some(0));
    assert_eq!(sim.deliveries().len(), 1, "{:?}", sim.transcript());
}

/// A stop in the middle of a long scan: the jobs the run has not reached
/// are left alone — not checked (the plugins are about to disconnect, which
/// would fail them `no_active_client`), not claimed — and none is charged
/// an attempt.
#[test]
fn clean_stop_in_a_long_scan_charges_no_job() {
    let mut d = start(json!({ "timed_jobs": { "max_tasks_per_tick": 1000 } }));
    // Each answer takes 2 s: the stop comes during the first delivery.
    let sim = Sim::connect(&d, "firefox-scan", &["--delay-ms", "2000"]);
    let db = d.db_path();
    let ids: Vec<(String, String)> =
        (0..100).map(|i| (format!("job-scan-{i:03}"), format!("lc-scan-{i:03}"))).collect();
    for (i, (_, lc)) in ids.iter().enumerate() {
        // No client on the link: the check picks a connected plugin.
        seed_route(&db, lc, "chatgpt", "auto", None, Some(100 + i as i64));
    }
    let jobs: Vec<(&str, &str)> = ids.iter().map(|(id, lc)| (id.as_str(), lc.as_str())).collect();
    seed_due_in_order(&db, &jobs);
    sim.wait_deliveries(1);

    let status = d.stop();
    assert!(status.success(), "clean exit: {status}");
    let charged = count_rows(
        &db,
        "SELECT count(*) FROM renewal_jobs WHERE attempt_count > 0 OR last_error IS NOT NULL",
    );
    assert_eq!(charged, 0, "jobs charged by the stop");
    let left = count_rows(&db, "SELECT count(*) FROM renewal_jobs WHERE status = 'pending'");
    assert_eq!(left, 100);
}

/// A stop while an HTTP request is still open (a relay to a plugin that
/// never answers): the server's grace keeps the plugins connected for
/// seconds, and the delivery in flight may be answered meanwhile, but the
/// run starts no new delivery — the ticker was told to stop, whether or not
/// the bridge is closing yet.
#[test]
fn clean_stop_with_a_request_open_starts_no_new_delivery() {
    let mut d = start(json!({}));
    let holder =
        Sim::connect(&d, "firefox-hold", &["--mode", "silent", "--platform", "claude", "--login", "claude"]);
    wait_login(&d, "firefox-hold", "claude");
    let addr = d.addr;
    let relay = std::thread::spawn(move || {
        let body = json!({ "platform": "claude", "method": "GET", "path": "/x" }).to_string();
        let headers = [("Content-Type", "application/json")];
        support::request(addr, "POST", "/v1/browser/request", &headers, Some(body.as_bytes())).status
    });
    let held = support::wait_until(WAIT, || {
        let browser = d.get("/v1/browser").data();
        let targets = browser["policy"]["targets"].as_array().cloned().unwrap_or_default();
        targets.iter().any(|t| t["client_id"] == "firefox-hold" && t["in_flight"] == 1)
    });
    assert!(held, "the relay is not in flight: {:?}", holder.transcript());
    let sim = Sim::connect(&d, "firefox-grace", &["--delay-ms", "1500"]);
    let db = d.db_path();
    for (lc, tab) in [("lc-grace-1", 3), ("lc-grace-2", 4)] {
        seed_route(&db, lc, "chatgpt", "auto", Some("firefox-grace"), Some(tab));
    }
    seed_due_in_order(&db, &[("job-grace-1", "lc-grace-1"), ("job-grace-2", "lc-grace-2")]);
    sim.wait_deliveries(1);

    let status = d.stop();
    assert!(status.success(), "clean exit: {status}");
    // The open request held the grace until its give-up.
    assert_eq!(relay.join().unwrap(), 503);
    assert_eq!(sim.deliveries().len(), 1, "a delivery started after the stop: {:?}", sim.transcript());
    let line = wait_job_line(&d, "job-grace-2", "job_deferred");
    assert_eq!(line["result"], "shutting_down", "{line}");
    assert_eq!(job_column_i64(&db, "job-grace-2", "attempt_count"), Some(0));
}
