//! The dispatcher's lines about one job (docs/RENEWAL.md "The log": the `job_*`
//! stages and their results), and how each job's turn ended, for the run's
//! summary. Split out of `dispatcher.rs`, which decides; this only reports.

use serde_json::{json, Value};

use super::RunContext;
use crate::store::{AttemptResult, FinishOutcome, Job, JobStatus, PauseReason};

/// How one job's turn ended, for the run summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    Succeeded,
    Retried,
    Failed,
    /// Deferred, or left as it was (a stop, a store error, an outcome
    /// discarded because the job changed meanwhile).
    Skipped,
}

/// How many jobs of a run ended each way: the run summary's
/// `successful_jobs`, `retried_jobs`, `failed_jobs`, `skipped_jobs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub succeeded: u64,
    pub retried: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Tally {
    pub fn count(&mut self, fate: Fate) {
        match fate {
            Fate::Succeeded => self.succeeded += 1,
            Fate::Retried => self.retried += 1,
            Fate::Failed => self.failed += 1,
            Fate::Skipped => self.skipped += 1,
        }
    }

    pub fn add(&mut self, more: Tally) {
        self.succeeded += more.succeeded;
        self.retried += more.retried;
        self.failed += more.failed;
        self.skipped += more.skipped;
    }
}

/// Logs one stage of one job, with its ids in the details.
pub(super) fn log_job(ctx: &RunContext, job: &Job, stage: &'static str, result: &str, extra: Value) {
    let mut details = json!({ "job_id": job.job_id, "local_conversation_id": job.local_conversation_id });
    if let (Value::Object(d), Value::Object(e)) = (&mut details, extra) {
        d.extend(e);
    }
    ctx.log(stage, result, details);
}

/// Logs a recorded outcome and says how the job's turn ended.
pub(super) fn log_outcome(
    ctx: &RunContext,
    job: &Job,
    result: &AttemptResult,
    outcome: &FinishOutcome,
) -> Fate {
    let attempt = job.attempt_count + 1;
    let status = outcome.job_status;
    let paused = outcome.paused.map(PauseReason::as_str);
    if !outcome.recorded {
        // Cancelled (or otherwise settled) while this run was looking at it.
        log_job(
            ctx,
            job,
            "job_outcome_discarded",
            "job_changed",
            json!({ "attempt": attempt, "status": status.map_or("missing", JobStatus::as_str) }),
        );
        return Fate::Skipped;
    }
    match result {
        AttemptResult::Success { .. } => {
            log_job(
                ctx,
                job,
                "job_completed",
                "attempt_succeeded",
                json!({ "attempt": attempt, "paused": paused }),
            );
            Fate::Succeeded
        }
        AttemptResult::Failure { error, terminal, .. } if status == Some(JobStatus::Failed) => {
            log_job(
                ctx,
                job,
                "job_failed",
                error,
                json!({ "attempt": attempt, "terminal": terminal, "paused": paused }),
            );
            Fate::Failed
        }
        AttemptResult::Failure { error, retry_at, .. } => {
            log_job(
                ctx,
                job,
                "job_retry_scheduled",
                error,
                json!({ "attempt": attempt, "next_attempt_at": retry_at, "paused": paused }),
            );
            Fate::Retried
        }
    }
}
