//! Write operations other than ingest: the system automation state, the
//! per-conversation switch, and the manual job transitions (retry, cancel).
//! Each runs inside the writer's transaction and reports "not found" or
//! "wrong state" as data, so the HTTP layer can map them to 404 and 409.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use super::model::*;
use super::StoreError;

/// Key of the system automation state in `kv`.
pub(super) const SYSTEM_STATE_KEY: &str = "system.automation";

pub(super) fn set_system_state(
    conn: &Connection,
    state: AutomationState,
    reason: Option<String>,
    now: i64,
) -> Result<SystemState, StoreError> {
    // Resuming clears the reason: it described the pause that just ended.
    let reason = if state == AutomationState::Running { None } else { reason };
    let value = json!({"automation_state": state.as_str(), "automation_reason": reason}).to_string();
    conn.prepare_cached(
        "INSERT INTO kv (key, value_json, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
    )?
    .execute(params![SYSTEM_STATE_KEY, value, now])?;
    Ok(SystemState { automation_state: state, automation_reason: reason, updated_at: Some(now) })
}

pub(super) fn set_conversation_status(
    conn: &Connection,
    id: &str,
    status: ConversationStatus,
    reason: Option<String>,
    now: i64,
) -> Result<Transition<()>, StoreError> {
    let changed = match status {
        ConversationStatus::Paused => conn
            .prepare_cached(
                "UPDATE local_conversations SET automation_status = 'paused', pause_reason = ?2,
                    paused_at = ?3, updated_at = MAX(updated_at, ?3)
                 WHERE local_conversation_id = ?1",
            )?
            .execute(params![id, reason.as_deref().unwrap_or(PauseReason::User.as_str()), now])?,
        // Switching to auto or manual is a fresh start: the pause and every
        // loop-protection counter are cleared (docs/RENEWAL.md "Loop protection").
        ConversationStatus::Auto | ConversationStatus::Manual => conn
            .prepare_cached(
                "UPDATE local_conversations SET automation_status = ?2, last_non_paused_automation_status = ?2,
                    pause_reason = NULL, paused_at = NULL, consecutive_failure_count = 0,
                    repeated_message_count = 0, repeated_renewal_count = 0,
                    last_message_fingerprint = NULL, last_renewal_fingerprint = NULL,
                    updated_at = MAX(updated_at, ?3)
                 WHERE local_conversation_id = ?1",
            )?
            .execute(params![id, status.as_str(), now])?,
    };
    Ok(if changed == 0 { Transition::NotFound } else { Transition::Changed(()) })
}

fn job_state(conn: &Connection, job_id: &str) -> Result<Option<JobStatus>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT status FROM renewal_jobs WHERE job_id = ?1")?
        .query_row(params![job_id], |row| row.get(0))
        .optional()?)
}

/// failed → pending, due now; attempts are kept, and `max_attempts` grows by
/// one when exhausted so the retry really gets an attempt.
pub(super) fn retry_job(conn: &Connection, job_id: &str, now: i64) -> Result<Transition<()>, StoreError> {
    match job_state(conn, job_id)? {
        None => Ok(Transition::NotFound),
        Some(status) if status != JobStatus::Failed => Ok(Transition::InvalidState(status.as_str().into())),
        Some(_) => {
            conn.prepare_cached(
                "UPDATE renewal_jobs SET status = 'pending', next_attempt_at = ?2, finished_at = NULL,
                    started_at = NULL,
                    max_attempts = CASE WHEN attempt_count >= max_attempts THEN attempt_count + 1 ELSE max_attempts END,
                    updated_at = MAX(updated_at, ?2)
                 WHERE job_id = ?1",
            )?
            .execute(params![job_id, now])?;
            Ok(Transition::Changed(()))
        }
    }
}

/// pending → failed with `last_error = "cancelled"`.
pub(super) fn cancel_job(conn: &Connection, job_id: &str, now: i64) -> Result<Transition<()>, StoreError> {
    match job_state(conn, job_id)? {
        None => Ok(Transition::NotFound),
        Some(status) if status != JobStatus::Pending => Ok(Transition::InvalidState(status.as_str().into())),
        Some(_) => {
            conn.prepare_cached(
                "UPDATE renewal_jobs SET status = 'failed', last_error = 'cancelled', next_attempt_at = NULL,
                    finished_at = ?2, updated_at = MAX(updated_at, ?2)
                 WHERE job_id = ?1",
            )?
            .execute(params![job_id, now])?;
            Ok(Transition::Changed(()))
        }
    }
}
