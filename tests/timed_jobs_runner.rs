//! The timed-jobs machinery (docs/RENEWAL.md "Timed jobs", "Pruning";
//! docs/API.md "Timed jobs"): `GET /v1/timed-jobs`, the JSONL log (file per
//! UTC day, line format, jobs' `log_path`, retention), `tick_overlap` when a
//! runner is still busy (and the other runners going on meanwhile), and the
//! `store.pruner` with its batches.

mod renewal_support;
mod support;

use std::collections::BTreeSet;
use std::fs;

use renewal_support::*;
use serde_json::{json, Value};
use support::{db, now_ms, seed_job, wait_until, JobSeed};

const RUNNERS: [&str; 3] = ["renewal.projector", "renewal.dispatcher", "store.pruner"];
const DAY_MS: i64 = 86_400_000;

#[test]
fn timed_jobs_endpoint_shows_runners_and_last_recovery() {
    let started = now_ms();
    let d = start(json!({}));
    for r in RUNNERS {
        wait_runs(&d, r, 2);
    }
    let data = timed_jobs(&d);
    let keys: BTreeSet<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["interval_ms", "last_recovery", "log_dir", "role", "runners"].into_iter().collect());
    assert_eq!(data["interval_ms"], 50);
    assert_eq!(data["role"], "primary");
    assert_eq!(data["log_dir"], log_dir(&d).display().to_string().as_str());
    let rec = &data["last_recovery"];
    let rec_keys: BTreeSet<&str> = rec.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        rec_keys,
        ["at", "recovered_execution_state_count", "recovery_next_attempt_at", "requeued_renewal_job_count"]
            .into_iter()
            .collect()
    );
    assert_eq!(rec["recovered_execution_state_count"], 0);
    assert_eq!(rec["requeued_renewal_job_count"], 0);
    assert_eq!(rec["recovery_next_attempt_at"], Value::Null);
    assert_between("last_recovery.at", rec["at"].as_i64().unwrap(), started, now_ms());

    let runners = data["runners"].as_array().unwrap();
    let names: Vec<&str> = runners.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, RUNNERS, "registered in order");
    let now = now_ms();
    for r in runners {
        let keys: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "last_details",
                "last_finished_at",
                "last_result",
                "last_started_at",
                "name",
                "next_run_at",
                "runs"
            ]
            .into_iter()
            .collect(),
            "{r}"
        );
        assert!(r["runs"].as_u64().unwrap() >= 3, "{r}");
        assert_eq!(r["last_result"], "ok", "{r}");
        assert!(r["last_details"].is_object(), "{r}");
        let last_started = r["last_started_at"].as_i64().unwrap();
        assert_between("last_started_at", last_started, started, now);
        assert_between("last_finished_at", r["last_finished_at"].as_i64().unwrap(), started, now);
        let next = r["next_run_at"].as_i64().unwrap();
        assert_between("next_run_at", next, last_started, now + 50 + 100);
    }
    assert_eq!(
        runners[1]["last_details"],
        json!({ "due_jobs": 0, "successful_jobs": 0, "retried_jobs": 0, "failed_jobs": 0, "skipped_jobs": 0 })
    );
    assert_eq!(runners[2]["last_details"], json!({ "pruned_jobs": 0, "pruned_messages": 0 }));
    assert_eq!(runners[0]["last_details"]["examined"], 0);
}

#[test]
fn jsonl_log_is_one_file_per_utc_day_and_jobs_point_at_it() {
    let before = now_ms();
    let d = start(json!({}));
    let sim = Sim::connect(&d, "firefox-log", &[]);
    auto_conversation(&d, "chatgpt", "conv-log", Some("firefox-log"), Some(3));
    ingest(
        &d,
        &message("chatgpt", "conv-log", "msg-log", "assistant", "log me", Some("firefox-log"), Some(3)),
    );
    let job_id = wait_job_for_message(&d, "msg-log")["job_id"].as_str().unwrap().to_string();
    let job = wait_job(&d, &job_id, "done", |j| j["status"] == "done");
    wait_log(&d, "job_completed", |l| is_job_line(l, &job_id, "job_completed"));
    let after = now_ms();
    sim.expect_deliveries(1);

    // File names: YYYY-MM-DD.jsonl, today's UTC date.
    let names: Vec<String> = fs::read_dir(log_dir(&d))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let days: BTreeSet<String> = [utc_date(before), utc_date(after)].into_iter().collect();
    assert!(!names.is_empty());
    for name in &names {
        let day = name.strip_suffix(".jsonl").unwrap_or_else(|| panic!("unexpected file {name}"));
        assert!(days.contains(day), "{name} is not today's UTC date {days:?}");
    }
    let path = std::path::PathBuf::from(job["log_path"].as_str().expect("log_path"));
    assert_eq!(path.parent().unwrap(), log_dir(&d));
    assert!(names.contains(&path.file_name().unwrap().to_string_lossy().into_owned()), "{path:?} {names:?}");

    // Every line: exactly ts, runner, batch_id, stage, result, details.
    let text = fs::read_to_string(&path).unwrap();
    let mut lines = Vec::new();
    for raw in text.lines() {
        let line: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"));
        let keys: BTreeSet<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["batch_id", "details", "result", "runner", "stage", "ts"].into_iter().collect(),
            "{raw}"
        );
        assert!(line["ts"].is_i64() && line["batch_id"].is_string() && line["stage"].is_string(), "{raw}");
        assert!(line["result"].is_string() && line["details"].is_object(), "{raw}");
        assert!(RUNNERS.contains(&line["runner"].as_str().unwrap()), "{raw}");
        lines.push(line);
    }
    // The job's whole story is in the file its log_path names.
    let stages: Vec<&str> = lines
        .iter()
        .filter(|l| l["details"]["job_id"] == job_id.as_str())
        .map(|l| l["stage"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["job_projected", "job_attempt_started", "job_completed"]);
    // Lines of one run share its batch_id.
    let attempt = lines.iter().find(|l| l["stage"] == "job_attempt_started").unwrap();
    let completed = lines.iter().find(|l| l["stage"] == "job_completed").unwrap();
    assert_eq!(attempt["batch_id"], completed["batch_id"]);
}

#[test]
fn log_files_older_than_retention_are_deleted() {
    let mut d = start(json!({ "timed_jobs": { "log_retention_days": 2 } }));
    let dir = log_dir(&d);
    let old = dir.join("2000-01-01.jsonl");
    let stale = dir.join(format!("{}.jsonl", utc_date(now_ms() - 5 * DAY_MS)));
    let recent = dir.join(format!("{}.jsonl", utc_date(now_ms() - DAY_MS)));
    let other = dir.join("notes.txt");
    for p in [&old, &stale, &recent, &other] {
        fs::write(p, "{}\n").unwrap();
    }
    d.restart();
    // Something to log, so the writer opens today's file.
    ingest(&d, &message("chatgpt", "conv-ret", "msg-ret", "user", "hi", None, None));
    wait_log(&d, "a line after the restart", |l| l["details"]["message_id"] == "msg-ret");
    assert!(wait_until(WAIT, || !old.exists() && !stale.exists()), "old log files still there");
    assert!(recent.exists(), "a file within the retention is kept");
    assert!(other.exists(), "files that are not day logs are left alone");
}

#[test]
fn a_busy_dispatcher_logs_tick_overlap_while_the_projector_goes_on() {
    let d = start(json!({ "renewal": { "execution_timeout_ms": 30000 } }));
    let mut sim = Sim::connect(&d, "firefox-overlap", &["--mode", "silent"]);
    let lc = auto_conversation(&d, "chatgpt", "conv-overlap", Some("firefox-overlap"), Some(3));
    let lc2 = auto_conversation(&d, "chatgpt", "conv-overlap-2", Some("firefox-overlap"), Some(4));
    ingest(
        &d,
        &message(
            "chatgpt",
            "conv-overlap",
            "msg-overlap",
            "assistant",
            "blocks",
            Some("firefox-overlap"),
            Some(3),
        ),
    );
    sim.wait_deliveries(1);
    let runs = runner(&d, "renewal.dispatcher")["runs"].as_u64().unwrap();

    // Ticks keep coming; the dispatcher is still in its run.
    let t = now_ms();
    let mut overlaps = Vec::new();
    assert!(
        wait_until(WAIT, || {
            overlaps =
                log_find(&d, |l| is_stage(l, "renewal.dispatcher", "tick_overlap", None) && ts(l) >= t);
            overlaps.len() >= 3
        }),
        "no tick_overlap: {}",
        log_tail(&d, 20)
    );
    assert_eq!(overlaps[0]["result"], "skipped");
    assert_eq!(runner(&d, "renewal.dispatcher")["runs"].as_u64().unwrap(), runs, "no second run started");

    // Runners are independent: the projector still projects meanwhile, and
    // the new job waits, due, untouched.
    ingest(
        &d,
        &message(
            "chatgpt",
            "conv-overlap-2",
            "msg-overlap-2",
            "assistant",
            "meanwhile",
            Some("firefox-overlap"),
            Some(4),
        ),
    );
    let job = wait_job_for_message(&d, "msg-overlap-2");
    assert_eq!(job["local_conversation_id"], lc2.as_str());
    assert_eq!(job["status"], "pending");
    assert_eq!(job["next_attempt_at"], job["created_at"], "due at once (next_attempt_at = now)");
    assert_eq!(conversation(&d, &lc)["execution_state"], "renewal_running");
    assert_eq!(runner(&d, "renewal.dispatcher")["runs"].as_u64().unwrap(), runs, "still the same run");
    wait_runs(&d, "renewal.projector", 3);

    // The plugin goes away: the run ends and the dispatcher runs again.
    sim.kill();
    wait_runs(&d, "renewal.dispatcher", 1);
}

/// Inserts `n` jobs in one transaction.
fn seed_jobs(
    db_path: &std::path::Path,
    prefix: &str,
    n: usize,
    status: &str,
    finished_at: Option<i64>,
    message_of: impl Fn(usize) -> String,
) {
    let mut conn = db(db_path);
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                    attempt_count, max_attempts, next_attempt_at, finished_at, created_at, updated_at)
                 VALUES (?1, 'lc-prune', ?2, ?3, 'x', 'text', 1, 3, ?4, ?5, ?6, ?6)",
            )
            .unwrap();
        let now = now_ms();
        let next = (status == "pending").then_some(now + 3_600_000);
        for i in 0..n {
            stmt.execute(rusqlite::params![
                format!("{prefix}-{i}"),
                message_of(i),
                status,
                next,
                finished_at,
                now - 40 * DAY_MS
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn seed_messages(db_path: &std::path::Path, prefix: &str, n: usize, observed_at: i64) {
    let mut conn = db(db_path);
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO messages (id, platform, conversation_id, role, raw_text, observed_at, created_at)
                 VALUES (?1, 'chatgpt', 'conv-prune', 'assistant', 'old text', ?2, ?2)",
            )
            .unwrap();
        for i in 0..n {
            stmt.execute(rusqlite::params![format!("{prefix}-{i}"), observed_at]).unwrap();
        }
    }
    tx.commit().unwrap();
}

#[test]
fn pruner_deletes_old_finished_jobs_and_unreferenced_messages_in_batches() {
    let mut d = start(json!({ "renewal": { "retention_days": 1 }, "messages": { "retention_days": 1 } }));
    // Seeded while stopped, so the first run after the start sees it all.
    d.stop();
    let db_path = d.db_path();
    let now = now_ms();
    // To prune: 1500 done and 1200 failed jobs finished days ago (2700 rows,
    // more than two batches).
    seed_jobs(&db_path, "old-done", 1500, "done", Some(now - 2 * DAY_MS), |i| format!("gone-msg-{i}"));
    seed_jobs(&db_path, "old-failed", 1200, "failed", Some(now - 3 * DAY_MS), |i| format!("gone-msg-f-{i}"));
    // To keep: recently finished, and unfinished whatever their age.
    seed_jobs(&db_path, "new-done", 5, "done", Some(now - 3_600_000), |i| format!("new-done-msg-{i}"));
    seed_jobs(&db_path, "new-failed", 5, "failed", Some(now - DAY_MS + 3_600_000), |i| {
        format!("new-failed-msg-{i}")
    });
    seed_jobs(&db_path, "old-pending", 3, "pending", None, |i| format!("kept-msg-{i}"));
    seed_jobs(&db_path, "old-running", 1, "running", None, |i| format!("kept-running-msg-{i}"));
    // Messages: 2200 old ones nobody references, 2 old ones referenced by
    // old finished jobs (unreferenced once those go), 4 old ones referenced
    // by kept jobs, 10 recent ones.
    seed_messages(&db_path, "old-msg", 2200, now - 2 * DAY_MS);
    seed_messages(&db_path, "gone-msg", 2, now - 2 * DAY_MS);
    seed_messages(&db_path, "kept-msg", 3, now - 10 * DAY_MS);
    seed_messages(&db_path, "kept-running-msg", 1, now - 10 * DAY_MS);
    seed_messages(&db_path, "new-msg", 10, now - 3_600_000);
    let jobs_before = count_rows(&db_path, "SELECT COUNT(*) FROM renewal_jobs");
    assert_eq!(jobs_before, 2714);

    d.restart();
    let line = wait_log(&d, "pruned", |l| is_stage(l, "store.pruner", "pruned", None));
    assert_eq!(line["result"], "ok");
    // One run goes on batch after batch until everything due is gone.
    assert_eq!(line["details"], json!({ "pruned_jobs": 2700, "pruned_messages": 2202 }));
    assert_eq!(count_rows(&db_path, "SELECT COUNT(*) FROM renewal_jobs"), 14);
    assert_eq!(
        count_rows(
            &db_path,
            "SELECT COUNT(*) FROM renewal_jobs WHERE job_id LIKE 'old-done-%' OR job_id LIKE 'old-failed-%'"
        ),
        0
    );
    let kept: BTreeSet<String> = {
        let conn = db(&db_path);
        let mut stmt = conn.prepare("SELECT id FROM messages").unwrap();
        let ids = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
        ids.map(|r| r.unwrap()).collect()
    };
    let mut expected: BTreeSet<String> = (0..3).map(|i| format!("kept-msg-{i}")).collect();
    expected.insert("kept-running-msg-0".into());
    expected.extend((0..10).map(|i| format!("new-msg-{i}")));
    assert_eq!(kept, expected);
    // Nothing more to do afterwards.
    wait_runs(&d, "store.pruner", 2);
    assert_eq!(log_find(&d, |l| is_stage(l, "store.pruner", "pruned", None)).len(), 1);
    assert_eq!(runner(&d, "store.pruner")["last_details"], json!({ "pruned_jobs": 0, "pruned_messages": 0 }));
    // The API stays usable and agrees.
    let sys = d.get("/v1/system").data();
    assert_eq!(sys["counts"]["messages"], 14);
    assert_eq!(sys["counts"]["jobs"]["done"], 5);
}

#[test]
fn messages_are_kept_forever_by_default() {
    let d = start(json!({ "renewal": { "retention_days": 1 } }));
    let db_path = d.db_path();
    seed_messages(&db_path, "ancient", 20, now_ms() - 400 * DAY_MS);
    let mut old = JobSeed::new("ancient-job", "failed");
    old.finished_at = Some(now_ms() - 2 * DAY_MS);
    old.message_id = "ancient-0".into();
    seed_job(&db_path, &old);
    let line = wait_log(&d, "pruned", |l| is_stage(l, "store.pruner", "pruned", None));
    assert_eq!(line["details"], json!({ "pruned_jobs": 1, "pruned_messages": 0 }));
    wait_runs(&d, "store.pruner", 3);
    assert_eq!(count_rows(&db_path, "SELECT COUNT(*) FROM messages WHERE id LIKE 'ancient-%'"), 20);
    assert_eq!(count_rows(&db_path, "SELECT COUNT(*) FROM renewal_jobs"), 0);
}
