//! Unit tests of `renewal.rs`: the outcome of an attempt against a
//! concurrent cancel, recovery's connection settings, the pruner's batch
//! bound, and the dispatcher's transitions.

use super::{
    defer_job, fail_job, finish_attempt, prune, recover, release_claim, start_attempt, Claim, Release,
};
use crate::store::model::PruneBatch;
use crate::store::model::RecoveryReport;
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

/// Recovery enlarges the page cache for its one statement; afterwards
/// the connection must be as it was, and the writer's connection must
/// still never checkpoint by itself (checkpoint.rs).
#[test]
fn recovery_gives_the_connection_back_as_it_was() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("recover");
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
    recover(&conn, 1_000, 0).unwrap();
    assert_eq!(pragma("cache_size"), crate::store::schema::WRITER_CACHE_KIB);
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

// ---------------------------------------------------------------------------
// The dispatcher's transitions: claim, release, defer, fail, recover
// ---------------------------------------------------------------------------

fn claim(job_id: &str, now: i64) -> Claim<'_> {
    Claim { job_id, local_id: "lc_1", log_path: Some("day.jsonl"), target_snapshot: Some("{}"), now }
}

/// `(status, next_attempt_at, last_attempt_at, started_at)` of a job, and
/// its conversation's execution state.
fn job_state(conn: &Connection, job_id: &str) -> (String, Option<i64>, Option<i64>, Option<i64>, String) {
    conn.query_row(
        "SELECT j.status, j.next_attempt_at, j.last_attempt_at, j.started_at, c.execution_state
         FROM renewal_jobs j JOIN local_conversations c USING (local_conversation_id) WHERE j.job_id = ?1",
        [job_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .unwrap()
}

fn second_job(conn: &Connection) {
    conn.execute_batch(
        "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
             max_attempts, next_attempt_at, created_at, updated_at)
             VALUES ('job_2', 'lc_1', 'm2', 'pending', 'renew', 'text', 3, 1, 1, 1);",
    )
    .unwrap();
}

/// docs/RENEWAL.md step 7: a claim takes the conversation's lock and marks
/// the job running, or changes nothing when the job is no longer pending
/// or the conversation is taken; a release puts back only a running
/// job's claim, and only then frees the conversation.
#[test]
fn a_claim_locks_the_conversation_and_a_release_puts_it_back() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("claim");
    conversation_with_job(&conn);
    second_job(&conn);
    assert!(start_attempt(&conn, &claim("job_1", 50)).unwrap());
    let running = ("running".into(), Some(1), Some(50), Some(50), "renewal_running".into());
    assert_eq!(job_state(&conn, "job_1"), running);
    // The job is no longer pending; the conversation is taken.
    assert!(!start_attempt(&conn, &claim("job_1", 60)).unwrap());
    assert!(!start_attempt(&conn, &claim("job_2", 60)).unwrap());
    assert_eq!(job_state(&conn, "job_2").0, "pending");

    // job_2 was never claimed: releasing it must not free job_1's lock.
    let release = |job_id, now| Release {
        job_id,
        local_conversation_id: "lc_1",
        next_attempt_at: 500,
        last_attempt_at: Some(7),
        log_path: None,
        now,
    };
    release_claim(&conn, &release("job_2", 70)).unwrap();
    assert_eq!(job_state(&conn, "job_1"), running);
    release_claim(&conn, &release("job_1", 80)).unwrap();
    assert_eq!(job_state(&conn, "job_1"), ("pending".into(), Some(500), Some(7), None, "idle".into()));
    assert!(start_attempt(&conn, &claim("job_2", 90)).unwrap());
}

/// A deferral moves a pending job without counting an attempt; a job
/// failed before any attempt is failed for good with its reason.
#[test]
fn a_deferral_moves_the_job_and_a_failure_before_any_attempt_ends_it() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("defer-fail");
    conversation_with_job(&conn);
    defer_job(&conn, "job_1", 900, None, 20).unwrap();
    assert_eq!(job_state(&conn, "job_1"), ("pending".into(), Some(900), None, None, "idle".into()));
    fail_job(&conn, "job_1", "missing_local_conversation", None, 30).unwrap();
    let (status, error, attempts, _, _) = job_and_conversation(&conn);
    let finished: Option<i64> = conn
        .query_row("SELECT finished_at FROM renewal_jobs WHERE job_id = 'job_1'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        (status.as_str(), error.as_str(), attempts, finished),
        ("failed", "missing_local_conversation", 0, Some(30))
    );
    assert_eq!(job_state(&conn, "job_1").1, None);
}

/// Below the failure threshold, a failure is counted but does not pause
/// the conversation (docs/RENEWAL.md "Loop protection").
#[test]
fn a_failure_below_the_threshold_does_not_pause() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("finish-below");
    conversation_with_job(&conn);
    let outcome =
        finish_attempt(&conn, &FinishAttempt { failure_pause_threshold: 2, ..no_client(20) }).unwrap();
    assert_eq!((outcome.job_status, outcome.paused), (Some(JobStatus::Pending), None));
    assert_eq!(
        job_and_conversation(&conn),
        ("pending".into(), "no_active_client".into(), 1, 1, "auto".into())
    );
}

/// Recovery at start: every lock released, every running job pending
/// again, due no earlier than `now + delay` (a later retry is kept).
#[test]
fn recovery_requeues_running_jobs_after_the_delay() {
    let (_dir, conn) = crate::store::test_dir::migrated_writer("recover-requeue");
    conversation_with_job(&conn);
    second_job(&conn);
    conn.execute_batch(
        "UPDATE local_conversations SET execution_state = 'renewal_running';
         UPDATE renewal_jobs SET status = 'running', started_at = 5, next_attempt_at = NULL WHERE job_id = 'job_1';
         UPDATE renewal_jobs SET status = 'running', started_at = 5, next_attempt_at = 5000 WHERE job_id = 'job_2';",
    )
    .unwrap();
    let report = recover(&conn, 1_000, 100).unwrap();
    let expected = RecoveryReport {
        recovered_execution_state_count: 1,
        requeued_renewal_job_count: 2,
        recovery_next_attempt_at: Some(1_100),
        at: 1_000,
    };
    assert_eq!(report, expected);
    assert_eq!(job_state(&conn, "job_1"), ("pending".into(), Some(1_100), None, None, "idle".into()));
    assert_eq!(job_state(&conn, "job_2").1, Some(5_000));
    let nothing = RecoveryReport { at: 2_000, ..RecoveryReport::default() };
    assert_eq!(recover(&conn, 2_000, 100).unwrap(), nothing);
}
