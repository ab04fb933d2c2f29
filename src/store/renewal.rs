//! The renewal writes after projection (`projection.rs`), each one writer
//! transaction: the dispatcher's job transitions and their effects on the
//! conversation (locks, counters, loop-protection pauses), recovery at
//! start, and pruning in small batches. docs/RENEWAL.md is the contract for
//! every rule here.

use rusqlite::{params, Connection, OptionalExtension};

use super::model::*;
use super::StoreError;
use crate::util::fingerprint;

/// Moves a job's next attempt without counting an attempt (a deferral).
pub(super) fn defer_job(
    conn: &Connection,
    job_id: &str,
    next_attempt_at: i64,
    log_path: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE renewal_jobs SET next_attempt_at = ?2, log_path = COALESCE(?3, log_path), updated_at = MAX(updated_at, ?4)
         WHERE job_id = ?1 AND status = 'pending'",
    )?
    .execute(params![job_id, next_attempt_at, log_path, now])?;
    Ok(())
}

/// A terminal failure before any attempt (the conversation is gone).
pub(super) fn fail_job(
    conn: &Connection,
    job_id: &str,
    error: &str,
    log_path: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE renewal_jobs SET status = 'failed', last_error = ?2, next_attempt_at = NULL, finished_at = ?3,
            log_path = COALESCE(?4, log_path), updated_at = MAX(updated_at, ?3)
         WHERE job_id = ?1 AND status = 'pending'",
    )?
    .execute(params![job_id, error, now, log_path])?;
    Ok(())
}

const LOCK_CONVERSATION: &str = "UPDATE local_conversations SET execution_state = 'renewal_running',
    updated_at = MAX(updated_at, ?2)
 WHERE local_conversation_id = ?1 AND execution_state = 'idle' AND automation_status = 'auto'";

const JOB_RUNNING: &str = "UPDATE renewal_jobs SET status = 'running', started_at = ?2, last_attempt_at = ?2,
    finished_at = NULL, log_path = COALESCE(?3, log_path), target_snapshot = COALESCE(?4, target_snapshot),
    updated_at = MAX(updated_at, ?2)
 WHERE job_id = ?1";

/// The statements every renewal job runs on its way from projection to
/// done or retry (the tests check that none opens a temporary b-tree).
#[cfg(test)]
pub(super) fn per_job_statements() -> Vec<&'static str> {
    vec![
        super::job_doc::INSERT_JOB,
        JOB_STATUS,
        LOCK_CONVERSATION,
        JOB_RUNNING,
        JOB_DONE,
        JOB_FAILED_ATTEMPT,
        CONVERSATION_AFTER_SUCCESS,
        CONVERSATION_AFTER_FAILURE,
        CONVERSATION_COUNTERS,
    ]
}

/// A job to claim (`start_attempt`).
pub(super) struct Claim<'a> {
    pub job_id: &'a str,
    pub local_id: &'a str,
    pub log_path: Option<&'a str>,
    /// The link the delivery will use, as `target_snapshot` (RENEWAL.md
    /// step 7); `None` keeps the stored one.
    pub target_snapshot: Option<&'a str>,
    pub now: i64,
}

/// Takes the conversation's execution lock and marks the job running, or
/// changes nothing and answers false when either is no longer as expected.
pub(super) fn start_attempt(conn: &Connection, c: &Claim<'_>) -> Result<bool, StoreError> {
    let status: Option<String> =
        conn.prepare_cached(JOB_STATUS)?.query_row(params![c.job_id], |r| r.get(0)).optional()?;
    if status.as_deref() != Some("pending") {
        return Ok(false);
    }
    let locked = conn.prepare_cached(LOCK_CONVERSATION)?.execute(params![c.local_id, c.now])?;
    if locked == 0 {
        return Ok(false);
    }
    conn.prepare_cached(JOB_RUNNING)?.execute(params![c.job_id, c.now, c.log_path, c.target_snapshot])?;
    Ok(true)
}

/// A claim to put back (`release_claim`).
pub(super) struct Release<'a> {
    pub job_id: &'a str,
    pub local_conversation_id: &'a str,
    pub next_attempt_at: i64,
    pub last_attempt_at: Option<i64>,
    pub log_path: Option<&'a str>,
    pub now: i64,
}

/// Undoes `start_attempt` for a job whose delivery was deferred after its
/// claim (a policy refusal): pending again, due at `next_attempt_at`, its
/// last attempt time restored, and the conversation's lock released.
pub(super) fn release_claim(conn: &Connection, r: &Release<'_>) -> Result<(), StoreError> {
    let released = conn
        .prepare_cached(
            "UPDATE renewal_jobs SET status = 'pending', started_at = NULL, next_attempt_at = ?2,
                last_attempt_at = ?3, log_path = COALESCE(?4, log_path), updated_at = MAX(updated_at, ?5)
             WHERE job_id = ?1 AND status = 'running'",
        )?
        .execute(params![r.job_id, r.next_attempt_at, r.last_attempt_at, r.log_path, r.now])?;
    if released == 1 {
        conn.prepare_cached(
            "UPDATE local_conversations SET execution_state = 'idle', updated_at = MAX(updated_at, ?2)
             WHERE local_conversation_id = ?1",
        )?
        .execute(params![r.local_conversation_id, r.now])?;
    }
    Ok(())
}

/// Like every outcome below, recorded only on a job that is still pending
/// (a failure found before the claim) or running: a job cancelled while the
/// dispatcher was looking at it stays cancelled. A failure found before the
/// claim still counts an attempt, so it sets `last_attempt_at` too
/// (RENEWAL.md step 7); a claimed job's was set by its claim.
const JOB_DONE: &str =
    "UPDATE renewal_jobs SET status = 'done', attempt_count = attempt_count + 1, last_error = NULL,
    next_attempt_at = NULL, finished_at = ?2, log_path = COALESCE(?3, log_path),
    target_snapshot = COALESCE(?4, target_snapshot), updated_at = MAX(updated_at, ?2)
 WHERE job_id = ?1 AND status IN ('pending', 'running')";

const JOB_FAILED_ATTEMPT: &str = "UPDATE renewal_jobs SET attempt_count = attempt_count + 1, last_error = ?2,
    status = CASE WHEN ?3 OR attempt_count + 1 >= max_attempts THEN 'failed' ELSE 'pending' END,
    next_attempt_at = CASE WHEN ?3 OR attempt_count + 1 >= max_attempts THEN NULL ELSE ?4 END,
    finished_at = CASE WHEN ?3 OR attempt_count + 1 >= max_attempts THEN ?5 ELSE NULL END,
    started_at = CASE WHEN ?3 OR attempt_count + 1 >= max_attempts THEN started_at ELSE NULL END,
    last_attempt_at = CASE WHEN status = 'pending' THEN ?5 ELSE last_attempt_at END,
    log_path = COALESCE(?6, log_path), target_snapshot = COALESCE(?7, target_snapshot),
    updated_at = MAX(updated_at, ?5)
 WHERE job_id = ?1 AND status IN ('pending', 'running')";

const JOB_STATUS: &str = "SELECT status FROM renewal_jobs WHERE job_id = ?1";

const CONVERSATION_AFTER_SUCCESS: &str = "UPDATE local_conversations SET execution_state = 'idle',
    consecutive_failure_count = 0, last_error = NULL, cooldown_until = ?2,
    repeated_renewal_count = CASE WHEN last_renewal_fingerprint = ?3 THEN repeated_renewal_count + 1 ELSE 1 END,
    last_renewal_fingerprint = ?3, updated_at = MAX(updated_at, ?4)
 WHERE local_conversation_id = ?1";

const CONVERSATION_AFTER_FAILURE: &str = "UPDATE local_conversations SET execution_state = 'idle',
    consecutive_failure_count = consecutive_failure_count + 1, last_error = ?2, updated_at = MAX(updated_at, ?3)
 WHERE local_conversation_id = ?1";

/// The two loop-protection counters and the automation status.
const CONVERSATION_COUNTERS: &str =
    "SELECT repeated_renewal_count, consecutive_failure_count, automation_status
 FROM local_conversations WHERE local_conversation_id = ?1";

/// Records an attempt's outcome on the job and its conversation, releases
/// the conversation's execution lock whatever happened, and applies the
/// loop protection (failure and repeated-renewal pauses).
///
/// A job that is no longer pending or running (a person cancelled it while
/// the dispatcher was failing it before its claim) is left as it is, and so
/// is its conversation: the outcome is not recorded (`recorded: false`).
pub(super) fn finish_attempt(conn: &Connection, f: &FinishAttempt) -> Result<FinishOutcome, StoreError> {
    let changed = match &f.result {
        AttemptResult::Success { .. } => {
            conn.prepare_cached(JOB_DONE)?.execute(params![f.job_id, f.now, f.log_path, f.target_snapshot])?
        }
        AttemptResult::Failure { error, terminal, retry_at } => conn
            .prepare_cached(JOB_FAILED_ATTEMPT)?
            .execute(params![f.job_id, error, terminal, retry_at, f.now, f.log_path, f.target_snapshot])?,
    };
    let job_status: Option<JobStatus> = match (&f.result, changed) {
        (AttemptResult::Success { .. }, 1) => Some(JobStatus::Done),
        _ => conn.prepare_cached(JOB_STATUS)?.query_row(params![f.job_id], |r| r.get(0)).optional()?,
    };
    if changed == 0 {
        return Ok(FinishOutcome { job_status, paused: None, recorded: false });
    }
    let paused = update_conversation_after(conn, f)?;
    Ok(FinishOutcome { job_status, paused, recorded: true })
}

fn update_conversation_after(
    conn: &Connection,
    f: &FinishAttempt,
) -> Result<Option<PauseReason>, StoreError> {
    let changed = match &f.result {
        AttemptResult::Success { summary } => conn
            .prepare_cached(CONVERSATION_AFTER_SUCCESS)?
            .execute(params![f.local_conversation_id, f.now + f.cooldown_ms, fingerprint(summary), f.now])?,
        AttemptResult::Failure { error, .. } => conn
            .prepare_cached(CONVERSATION_AFTER_FAILURE)?
            .execute(params![f.local_conversation_id, error, f.now])?,
    };
    if changed == 0 {
        return Ok(None);
    }
    // Read back by key rather than with `RETURNING`, which buffers its rows
    // in a temporary b-tree opened per run.
    let (repeated, failures, status): (i64, i64, ConversationStatus) = conn
        .prepare_cached(CONVERSATION_COUNTERS)?
        .query_row(params![f.local_conversation_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let count = match f.result {
        AttemptResult::Success { .. } => repeated,
        AttemptResult::Failure { .. } => failures,
    };
    let (threshold, reason) = match f.result {
        AttemptResult::Success { .. } => (f.repeat_pause_threshold, PauseReason::RepeatedRenewal),
        AttemptResult::Failure { .. } => (f.failure_pause_threshold, PauseReason::ExecutionFailure),
    };
    if status != ConversationStatus::Auto || count < threshold as i64 {
        return Ok(None);
    }
    conn.prepare_cached(
        "UPDATE local_conversations SET automation_status = 'paused', pause_reason = ?2, paused_at = ?3
         WHERE local_conversation_id = ?1",
    )?
    .execute(params![f.local_conversation_id, reason.as_str(), f.now])?;
    Ok(Some(reason))
}

/// Recovery at start: every execution lock released, every running job
/// back to pending after the recovery delay (at-least-once delivery).
pub(super) fn recover(conn: &Connection, now: i64, delay_ms: i64) -> Result<RecoveryReport, StoreError> {
    // Requeuing many running jobs rewrites many pages; with the default 2 MB
    // page cache SQLite spills them mid-transaction and reads them back
    // (measured: 2.6 s for 100k jobs). A large cache for this one statement
    // keeps them in memory until the commit writes them once.
    // It is put back as the connection had it, not as a fixed number. (The
    // checkpoint of that much WAL runs in the background, checkpoint.rs.)
    let cache_size = conn.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0))?;
    conn.pragma_update(None, "cache_size", -262_144)?;
    let report = requeue(conn, now, delay_ms);
    conn.pragma_update(None, "cache_size", cache_size)?;
    report
}

fn requeue(conn: &Connection, now: i64, delay_ms: i64) -> Result<RecoveryReport, StoreError> {
    let released = conn
        .prepare_cached(
            "UPDATE local_conversations SET execution_state = 'idle', updated_at = MAX(updated_at, ?1)
             WHERE execution_state != 'idle'",
        )?
        .execute(params![now])?;
    let next = now + delay_ms;
    let requeued = conn
        .prepare_cached(
            "UPDATE renewal_jobs SET status = 'pending', started_at = NULL, finished_at = NULL,
                next_attempt_at = MAX(IFNULL(next_attempt_at, 0), ?2), updated_at = MAX(updated_at, ?1)
             WHERE status = 'running'",
        )?
        .execute(params![now, next])?;
    Ok(RecoveryReport {
        recovered_execution_state_count: released as i64,
        requeued_renewal_job_count: requeued as i64,
        recovery_next_attempt_at: (requeued > 0).then_some(next),
        at: now,
    })
}

/// Deletes at most `batch` rows in all: finished jobs first, then
/// unreferenced old messages with what is left (docs/RENEWAL.md: at most 1000
/// rows per transaction); the pruner repeats until a batch comes back short.
pub(super) fn prune(conn: &Connection, p: &PruneBatch) -> Result<PruneReport, StoreError> {
    let jobs = conn
        .prepare_cached(
            "DELETE FROM renewal_jobs WHERE job_id IN (
                SELECT job_id FROM renewal_jobs WHERE status IN ('done', 'failed') AND finished_at < ?1 LIMIT ?2)",
        )?
        .execute(params![p.jobs_finished_before, p.batch as i64])?;
    let left = p.batch.saturating_sub(jobs);
    let messages = match p.messages_observed_before.filter(|_| left > 0) {
        None => 0,
        Some(before) => conn
            .prepare_cached(
                "DELETE FROM messages WHERE id IN (
                    SELECT m.id FROM messages m WHERE m.observed_at < ?1
                    AND NOT EXISTS (SELECT 1 FROM renewal_jobs j WHERE j.message_id = m.id)
                    AND m.seq < (SELECT MAX(seq) FROM messages) LIMIT ?2)",
            )?
            // The newest message is kept: the ingest sequence continues from it.
            .execute(params![before, left as i64])?,
    };
    Ok(PruneReport { jobs: jobs as i64, messages: messages as i64 })
}

#[cfg(test)]
#[path = "renewal_tests.rs"]
mod tests;
