//! Unit tests of `renewal.rs` (split out to keep that file short): the
//! outcome of an attempt against a concurrent cancel, templates, recovery's
//! connection settings, and the pruner's batch bound.

use super::{finish_attempt, prune, recover, render_template};
use crate::store::model::PruneBatch;
use crate::store::model::{AttemptResult, FinishAttempt, JobStatus, PauseReason};
use crate::store::ops::cancel_job;
use rusqlite::Connection;

/// One `auto` conversation with one pending job, due now.
fn conversation_with_job(conn: &Connection) {
    conn.execute_batch(
        "INSERT INTO local_conversations (local_conversation_id, platform, automation_status, created_at, updated_at)
             VALUES ('lc_1', 'chatgpt', 'auto', 1, 1);
         INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
             max_attempts, next_attempt_at, created_at, updated_at)
             VALUES ('job_1', 'lc_1', 'm1', 'pending', 'renew', 'text', 3, 1, 1, 1);",
    )
    .unwrap();
}

fn no_client(now: i64) -> FinishAttempt {
    FinishAttempt {
        job_id: "job_1".into(),
        local_conversation_id: "lc_1".into(),
        now,
        result: AttemptResult::Failure {
            error: "no_active_client".into(),
            terminal: false,
            retry_at: now + 1000,
        },
        cooldown_ms: 0,
        failure_pause_threshold: 1,
        repeat_pause_threshold: 3,
        log_path: None,
        target_snapshot: None,
    }
}

fn job_and_conversation(conn: &Connection) -> (String, String, i64, i64, String) {
    conn.query_row(
        "SELECT j.status, j.last_error, j.attempt_count, c.consecutive_failure_count, c.automation_status
         FROM renewal_jobs j JOIN local_conversations c USING (local_conversation_id) WHERE j.job_id = 'job_1'",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .unwrap()
}

/// The dispatcher fails a job before its claim (no plugin connected)
/// while a person cancels it: the cancel, answered 200, must stand, and
/// the void attempt must not count against the conversation.
#[test]
fn a_failure_recorded_after_a_cancel_leaves_the_job_cancelled() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("finish-cancelled");
    conversation_with_job(&conn);
    cancel_job(&conn, "job_1", 10).unwrap();
    let outcome = finish_attempt(&conn, &no_client(20)).unwrap();
    assert!(!outcome.recorded);
    assert_eq!((outcome.job_status, outcome.paused), (Some(JobStatus::Failed), None));
    assert_eq!(job_and_conversation(&conn), ("failed".into(), "cancelled".into(), 0, 0, "auto".into()));
}

#[test]
fn a_failure_before_the_claim_is_counted_on_a_pending_job() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("finish-pending");
    conversation_with_job(&conn);
    let outcome = finish_attempt(&conn, &no_client(20)).unwrap();
    assert!(outcome.recorded);
    assert_eq!(
        (outcome.job_status, outcome.paused),
        (Some(JobStatus::Pending), Some(PauseReason::ExecutionFailure))
    );
    assert_eq!(
        job_and_conversation(&conn),
        ("pending".into(), "no_active_client".into(), 1, 1, "paused".into())
    );
}

#[test]
fn template_is_one_pass() {
    let out = render_template(
        "[renewal] {summary}\n{link} {unknown} {",
        &[("summary", "a {link} b"), ("link", "L")],
    );
    assert_eq!(out, "[renewal] a {link} b\nL {unknown} {");
}

/// Recovery enlarges the page cache for its one statement; afterwards
/// the connection must be as it was, and the writer's connection must
/// still never checkpoint by itself (checkpoint.rs).
#[test]
fn recovery_gives_the_connection_back_as_it_was() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("recover");
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
    recover(&conn, 1_000, 0).unwrap();
    assert_eq!(pragma("cache_size"), -2000);
    assert_eq!(pragma("wal_autocheckpoint"), 0);
    conn.pragma_update(None, "cache_size", -4096).unwrap();
    recover(&conn, 1_000, 0).unwrap();
    assert_eq!(pragma("cache_size"), -4096);
}

/// A prune batch holds at most `batch` rows in all, jobs first (docs/RENEWAL.md:
/// at most 1000 rows per transaction), not `batch` of each.
#[test]
fn a_prune_batch_deletes_at_most_its_size_in_all() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("prune");
    for i in 0..6 {
        conn.execute(
            "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                 max_attempts, finished_at, created_at, updated_at)
                 VALUES (?1, 'lc_1', ?1, 'done', 'renew', 'text', 3, 1, 1, 1)",
            [format!("job_{i}")],
        )
        .unwrap();
    }
    for i in 0..7 {
        conn.execute(
            "INSERT INTO messages (id, platform, conversation_id, role, raw_text, observed_at, created_at)
                 VALUES (?1, 'chatgpt', 'c', 'assistant', 'x', 1, 1)",
            [format!("msg_{i}")],
        )
        .unwrap();
    }
    let batch = PruneBatch { jobs_finished_before: 10, messages_observed_before: Some(10), batch: 10 };
    let first = prune(&conn, &batch).unwrap();
    assert_eq!((first.jobs, first.messages), (6, 4));
    // The rest, less the newest message (the ingest sequence goes on from it).
    let second = prune(&conn, &batch).unwrap();
    assert_eq!((second.jobs, second.messages), (0, 2));
}
