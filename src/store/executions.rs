//! The `executions` writes (docs/BAA.md "What happens to a message"), each one writer
//! transaction, so every state change of a block is committed before the
//! worker takes its next step: recording a live message's blocks at ingest,
//! taking a conversation for a message (`instruction_running`, or the
//! message's blocks rejected when automation is off for it), starting a
//! block (the same check again, then `running`), finishing it, and — in the
//! transaction that makes a message's last block final — releasing the
//! conversation and creating the `[baa]` reply as a renewal job, so the
//! reply is as durable as the results it reports. Recovery at start fails
//! every block found `running` with `interrupted`.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::json;

use super::exec_model::*;
use super::job_doc::INSERT_JOB;
use super::model::*;
use super::ops::SYSTEM_STATE_KEY;
use super::read::{active_link, message_by_id, parse_system_state};
use super::StoreError;
use crate::baa::Reason;
use crate::util::new_id;

pub(super) const COLUMNS: &str = "instruction_id, message_id, local_conversation_id, block_index, target, \
     tool, params_kind, params, status, summary, result_json, error, artifact_path, started_at, finished_at, \
     created_at";

pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Execution> {
    Ok(Execution {
        instruction_id: r.get(0)?,
        message_id: r.get(1)?,
        local_conversation_id: r.get(2)?,
        block_index: r.get(3)?,
        target: r.get(4)?,
        tool: r.get(5)?,
        params_kind: r.get(6)?,
        params: r.get(7)?,
        status: r.get(8)?,
        summary: r.get(9)?,
        result_json: r.get(10)?,
        error: r.get(11)?,
        artifact_path: r.get(12)?,
        started_at: r.get(13)?,
        finished_at: r.get(14)?,
        created_at: r.get(15)?,
    })
}

const INSERT: &str = "INSERT INTO executions (instruction_id, message_id, local_conversation_id, block_index,
    target, tool, params_kind, params, status, summary, error, finished_at, created_at)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
 ON CONFLICT (instruction_id) DO NOTHING";

/// Records the blocks of a message just ingested, if it arrived live: its
/// conversation is `auto`, the system `running`, and the message is the
/// conversation's newest (a late copy of an older answer runs nothing).
/// Returns how many rows were recorded. A message whose blocks are all
/// final already (all invalid) gets its reply at once.
pub(super) fn record_live(
    conn: &Connection,
    message_id: &str,
    local_id: &str,
    blocks: &[NewExecution],
    reply: &ReplySettings,
    now: i64,
) -> Result<usize, StoreError> {
    let conv: Option<(ConversationStatus, Option<String>)> = conn
        .prepare_cached(
            "SELECT automation_status, last_message_id FROM local_conversations WHERE local_conversation_id = ?1",
        )?
        .query_row(params![local_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let live = matches!(&conv, Some((ConversationStatus::Auto, last)) if last.as_deref() == Some(message_id));
    if !live || system_state(conn)? != AutomationState::Running {
        return Ok(0);
    }
    let mut stmt = conn.prepare_cached(INSERT)?;
    let mut recorded = 0;
    for b in blocks {
        let finished_at = b.status.is_final().then_some(now);
        recorded += stmt.execute(params![
            b.instruction_id,
            message_id,
            local_id,
            b.block_index,
            b.target,
            b.tool,
            b.params_kind,
            b.params,
            b.status,
            b.summary,
            b.error,
            finished_at,
            now
        ])?;
    }
    if recorded > 0 && blocks.iter().all(|b| b.status.is_final()) {
        finish_message(conn, message_id, local_id, reply, now)?;
    }
    Ok(recorded)
}

fn system_state(conn: &Connection) -> Result<AutomationState, StoreError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT value_json, updated_at FROM kv WHERE key = ?1")?
        .query_row(params![SYSTEM_STATE_KEY], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.map(|(json, at)| parse_system_state(&json, at)).unwrap_or_default().automation_state)
}

/// Why automation is off for a conversation now, if it is: the system
/// paused, or the conversation not `auto` (or gone). A draining system
/// still finishes the blocks already queued, as the dispatcher finishes
/// the jobs already pending.
fn gate(conn: &Connection, local_id: &str) -> Result<Option<Reason>, StoreError> {
    let status: Option<ConversationStatus> = conn
        .prepare_cached("SELECT automation_status FROM local_conversations WHERE local_conversation_id = ?1")?
        .query_row(params![local_id], |r| r.get(0))
        .optional()?;
    Ok(match status {
        None => Some(Reason::ConversationMissing),
        Some(_) if system_state(conn)? == AutomationState::Paused => Some(Reason::SystemPaused),
        Some(ConversationStatus::Paused) => Some(Reason::AutomationPaused),
        Some(ConversationStatus::Manual) => Some(Reason::AutomationManual),
        Some(ConversationStatus::Auto) => None,
    })
}

/// Takes the message's conversation for its blocks, or says why not.
pub(super) fn begin_message(
    conn: &Connection,
    message_id: &str,
    local_id: &str,
    reply: &ReplySettings,
    now: i64,
) -> Result<Begin, StoreError> {
    if let Some(reason) = gate(conn, local_id)? {
        reject_pending(conn, message_id, reason, now)?;
        return Ok(Begin::Stopped(finish_message(conn, message_id, local_id, reply, now)?));
    }
    // Only this worker sets `instruction_running`, and it releases it
    // before taking the next message; the dispatcher's lock means wait.
    let taken = conn
        .prepare_cached(
            "UPDATE local_conversations SET execution_state = 'instruction_running', updated_at = MAX(updated_at, ?2)
             WHERE local_conversation_id = ?1 AND execution_state != 'renewal_running'",
        )?
        .execute(params![local_id, now])?;
    if taken == 0 {
        return Ok(Begin::Busy);
    }
    Ok(Begin::Locked(message_executions(conn, message_id, true)?))
}

/// Marks a block `running`, after checking once more that automation is on
/// for its conversation (a pause between two blocks stops the rest).
pub(super) fn start_block(
    conn: &Connection,
    exec: &Execution,
    reply: &ReplySettings,
    now: i64,
) -> Result<Start, StoreError> {
    let (message_id, local_id) = (&exec.message_id, &exec.local_conversation_id);
    if let Some(reason) = gate(conn, local_id)? {
        reject_pending(conn, message_id, reason, now)?;
        return Ok(Start::Stopped(finish_message(conn, message_id, local_id, reply, now)?));
    }
    let started = conn
        .prepare_cached(
            "UPDATE executions SET status = 'running', started_at = ?2 WHERE instruction_id = ?1 AND status = 'pending'",
        )?
        .execute(params![exec.instruction_id, now])?;
    if started == 0 {
        return Err(StoreError::Sqlite(format!("execution {} is not pending", exec.instruction_id)));
    }
    Ok(Start::Go)
}

/// Records how a block ended (from `running`, or from `pending` for a
/// block refused before it started). When it was the message's last open
/// block, the message is finished in the same transaction.
pub(super) fn finish_block(
    conn: &Connection,
    exec: &Execution,
    result: &BlockResult,
    reply: &ReplySettings,
    now: i64,
) -> Result<Option<MessageDone>, StoreError> {
    let updated = conn
        .prepare_cached(
            "UPDATE executions SET status = ?2, summary = ?3, result_json = ?4, error = ?5, artifact_path = ?6,
                finished_at = ?7
             WHERE instruction_id = ?1 AND (status = 'pending' OR status = 'running')",
        )?
        .execute(params![
            exec.instruction_id,
            result.status,
            result.summary,
            result.result_json,
            result.error,
            result.artifact_path,
            now
        ])?;
    if updated == 0 {
        return Err(StoreError::Sqlite(format!("execution {} is already final", exec.instruction_id)));
    }
    if open_blocks(conn, &exec.message_id)? > 0 {
        return Ok(None);
    }
    finish_message(conn, &exec.message_id, &exec.local_conversation_id, reply, now).map(Some)
}

fn open_blocks(conn: &Connection, message_id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM executions WHERE message_id = ?1 AND (status = 'pending' OR status = 'running')",
        )?
        .query_row(params![message_id], |r| r.get(0))?)
}

fn reject_pending(conn: &Connection, message_id: &str, reason: Reason, now: i64) -> Result<(), StoreError> {
    let summary = match reason {
        Reason::SystemPaused => "the system was paused before this block ran",
        Reason::AutomationPaused => "the conversation was paused before this block ran",
        Reason::AutomationManual => "the conversation was switched to manual before this block ran",
        _ => "automation was switched off before this block ran",
    };
    conn.prepare_cached(
        "UPDATE executions SET status = 'rejected', error = ?2, summary = ?3, finished_at = ?4
         WHERE message_id = ?1 AND status = 'pending'",
    )?
    .execute(params![message_id, reason.code(), summary, now])?;
    Ok(())
}

/// The message's blocks in order (only the pending ones if asked).
pub(super) fn message_executions(
    conn: &Connection,
    message_id: &str,
    pending_only: bool,
) -> Result<Vec<Execution>, StoreError> {
    let filter = if pending_only { "AND status = 'pending'" } else { "" };
    let sql = format!("SELECT {COLUMNS} FROM executions WHERE message_id = ?1 {filter} ORDER BY block_index");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![message_id], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Releases the conversation and creates the reply job — unless every
/// block was stopped because automation was switched off, which the
/// person did on purpose: then nothing is typed into the chat.
fn finish_message(
    conn: &Connection,
    message_id: &str,
    local_id: &str,
    reply: &ReplySettings,
    now: i64,
) -> Result<MessageDone, StoreError> {
    conn.prepare_cached(
        "UPDATE local_conversations SET execution_state = 'idle', updated_at = MAX(updated_at, ?2)
         WHERE local_conversation_id = ?1 AND execution_state = 'instruction_running'",
    )?
    .execute(params![local_id, now])?;
    let executions = message_executions(conn, message_id, false)?;
    let stopped = |e: &Execution| {
        e.status == ExecutionStatus::Rejected && e.error.as_deref().is_some_and(Reason::is_gate_code)
    };
    if executions.is_empty() || executions.iter().all(stopped) {
        return Ok(MessageDone { message_id: message_id.to_string(), reply_job_id: None });
    }
    let job_id = insert_reply(conn, message_id, local_id, &executions, reply, now)?;
    Ok(MessageDone { message_id: message_id.to_string(), reply_job_id: job_id })
}

/// The reply as a renewal job: the dispatcher delivers it through the
/// policy and `proxy_delivery`, with the renewal retry rules.
fn insert_reply(
    conn: &Connection,
    message_id: &str,
    local_id: &str,
    executions: &[Execution],
    reply: &ReplySettings,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let text = crate::baa::reply::render(executions, &reply.artifact_base);
    let message = message_by_id(conn, message_id, false)?;
    let source = message.as_ref().map(|m| {
        json!({ "id": m.message_id, "platform": m.platform, "conversationId": m.conversation_id,
                "observedAt": m.observed_at })
    });
    let ids: Vec<&str> = executions.iter().map(|e| e.instruction_id.as_str()).collect();
    let payload = json!({
        "kind": "baa.reply", "version": 1, "text": text, "sourceMessage": source, "instructions": ids,
    })
    .to_string();
    let snapshot = active_link(conn, local_id)?.map(|link| super::job_doc::snapshot(&link));
    let job_id = new_id("job_");
    let inserted = conn.prepare_cached(INSERT_JOB)?.execute(params![
        job_id,
        local_id,
        message_id,
        payload,
        snapshot,
        reply.max_attempts,
        now,
        Option::<String>::None
    ])?;
    Ok((inserted == 1).then_some(job_id))
}

/// Recovery at start: every block found `running` was interrupted by a
/// crash or a stop; it is failed with `interrupted` and never run again.
/// A message left with no open block gets its reply now.
pub(super) fn recover(
    conn: &Connection,
    reply: &ReplySettings,
    now: i64,
) -> Result<ExecutionRecovery, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, local_conversation_id FROM executions WHERE status = 'running' ORDER BY rowid",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut messages: Vec<(String, String)> = Vec::new();
    for row in rows {
        let row = row?;
        if !messages.contains(&row) {
            messages.push(row);
        }
    }
    drop(stmt);
    let interrupted = conn
        .prepare_cached(
            "UPDATE executions SET status = 'failed', error = ?1, finished_at = ?2,
                summary = 'the daemon stopped while this block ran; it is not run again'
             WHERE status = 'running'",
        )?
        .execute(params![Reason::Interrupted.code(), now])?;
    let mut replies = Vec::new();
    for (message_id, local_id) in messages {
        if open_blocks(conn, &message_id)? == 0 {
            finish_message(conn, &message_id, &local_id, reply, now)?;
            replies.push(message_id);
        }
    }
    Ok(ExecutionRecovery { interrupted, replies })
}

/// Whether the message has blocks on record (the projector skips it: the
/// reply keeps the conversation going).
pub(super) fn has_executions(conn: &Connection, message_id: &str) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM executions WHERE message_id = ?1 LIMIT 1")?
        .query_row(params![message_id], |_| Ok(()))
        .optional()?
        .is_some())
}

#[cfg(test)]
#[path = "executions_tests.rs"]
mod tests;
