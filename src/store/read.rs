//! Reads: every query, run on a connection borrowed from the read pool
//! (`pool.rs`). In WAL mode these readers see the last commit and never
//! wait for the writer.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::model::*;
use super::ops::SYSTEM_STATE_KEY;
use super::paging::{page_query, text, Where};
use super::{Store, StoreError};

pub(super) const MESSAGE_COLUMNS: &str = "id, platform, conversation_id, role, raw_text, summary, page_url, \
     page_title, tab_id, client_id, organization_id, observed_at, created_at";

pub(super) fn message_from_row(row: &Row<'_>, with_text: bool) -> rusqlite::Result<Message> {
    Ok(Message {
        message_id: row.get(0)?,
        platform: row.get(1)?,
        conversation_id: row.get(2)?,
        role: row.get(3)?,
        raw_text: if with_text { row.get(4)? } else { None },
        summary: row.get(5)?,
        page_url: row.get(6)?,
        page_title: row.get(7)?,
        tab_id: row.get(8)?,
        client_id: row.get(9)?,
        organization_id: row.get(10)?,
        observed_at: row.get(11)?,
        created_at: row.get(12)?,
    })
}

pub(super) fn message_by_id(
    conn: &Connection,
    id: &str,
    with_text: bool,
) -> Result<Option<Message>, StoreError> {
    // Lists leave the text out; selecting NULL in its place keeps one mapper.
    let text_col = if with_text { "raw_text" } else { "NULL" };
    let sql =
        format!("SELECT {} FROM messages WHERE id = ?1", MESSAGE_COLUMNS.replacen("raw_text", text_col, 1));
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id], |row| message_from_row(row, with_text))
        .optional()?)
}

const LINK_COLUMNS: &str =
    "link_id, local_conversation_id, platform, client_id, remote_conversation_id, page_url, \
     page_title, route_path, route_pattern, route_params, target_kind, target_id, target_payload, is_active, \
     observed_at, created_at, updated_at";

fn link_from_row(row: &Row<'_>) -> rusqlite::Result<Link> {
    link_at(row, 0)
}

/// A link whose `LINK_COLUMNS` start at column `i`.
fn link_at(row: &Row<'_>, i: usize) -> rusqlite::Result<Link> {
    Ok(Link {
        link_id: row.get(i)?,
        local_conversation_id: row.get(i + 1)?,
        platform: row.get(i + 2)?,
        client_id: row.get(i + 3)?,
        remote_conversation_id: row.get(i + 4)?,
        page_url: row.get(i + 5)?,
        page_title: row.get(i + 6)?,
        route_path: row.get(i + 7)?,
        route_pattern: row.get(i + 8)?,
        route_params: row.get(i + 9)?,
        target_kind: row.get(i + 10)?,
        target_id: row.get(i + 11)?,
        target_payload: row.get(i + 12)?,
        is_active: row.get::<_, i64>(i + 13)? != 0,
        observed_at: row.get(i + 14)?,
        created_at: row.get(i + 15)?,
        updated_at: row.get(i + 16)?,
    })
}

/// The local conversation a platform conversation is linked to, if any.
pub(super) fn find_local_conversation(
    conn: &Connection,
    platform: &str,
    remote_id: &str,
) -> Result<Option<String>, StoreError> {
    // The aggregate always yields one row; its id is NULL when no link exists.
    let id: Option<String> = conn
        .prepare_cached(LINKED_LOCAL_CONVERSATION)?
        .query_row(params![platform, remote_id], |row| row.get(0))?;
    Ok(id)
}

/// The rule for which local conversation a platform conversation (`?1`
/// platform, `?2` remote id) belongs to: its active link's, else the most
/// recently updated link's. [`projection_target`] embeds it too.
///
/// Written as `max()` with a bare column (SQLite takes the bare column from
/// the row holding the maximum) rather than `ORDER BY … LIMIT 1`: without
/// an index on that order, SQLite sorts in a temporary b-tree it opens and
/// closes for every run, and this query runs for every ingested message.
/// `is_active` outweighs any `updated_at` (milliseconds, below 10^14 until
/// the year 5138).
pub(super) const LINKED_LOCAL_CONVERSATION: &str =
    "SELECT local_conversation_id, max(is_active * 100000000000000 + updated_at) FROM conversation_links
     WHERE platform = ?1 AND remote_conversation_id = ?2";

/// What the projector needs of the conversation a message belongs to.
pub(super) struct ProjectionTarget {
    pub local_conversation_id: String,
    pub automation_status: ConversationStatus,
    pub last_message_id: Option<String>,
    pub cooldown_until: Option<i64>,
    pub active_link: Option<Link>,
}

/// Joins conversation `c` to its active link `l`, or to NULLs without one
/// (at most one link is active, a unique index says so).
const ACTIVE_LINK_OF_C: &str =
    "LEFT JOIN conversation_links l ON l.local_conversation_id = c.local_conversation_id AND l.is_active = 1";

/// `columns` (a comma-separated list) each prefixed with `table.`.
fn qualified(table: &str, columns: &str) -> String {
    columns.split(',').map(|c| format!("{table}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

fn projection_target_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT c.local_conversation_id, c.automation_status, c.last_message_id, c.cooldown_until, {}
             FROM ({}) f
             JOIN local_conversations c ON c.local_conversation_id = f.local_conversation_id
             {ACTIVE_LINK_OF_C}",
            qualified("l", LINK_COLUMNS),
            LINKED_LOCAL_CONVERSATION
        )
    })
}

/// The local conversation a platform conversation is linked to (as
/// [`find_local_conversation`] finds it), with its active link, in
/// one query: the projector runs this for every message it examines.
pub(super) fn projection_target(
    conn: &Connection,
    platform: &str,
    remote_id: &str,
) -> Result<Option<ProjectionTarget>, StoreError> {
    let mut stmt = conn.prepare_cached(projection_target_sql())?;
    let target = stmt
        .query_row(params![platform, remote_id], |row| {
            let link_id: Option<String> = row.get(4)?;
            Ok(ProjectionTarget {
                local_conversation_id: row.get(0)?,
                automation_status: row.get(1)?,
                last_message_id: row.get(2)?,
                cooldown_until: row.get(3)?,
                active_link: link_id.map(|_| link_at(row, 4)).transpose()?,
            })
        })
        .optional()?;
    Ok(target)
}

pub(super) fn active_link(conn: &Connection, local_id: &str) -> Result<Option<Link>, StoreError> {
    let sql = format!(
        "SELECT {LINK_COLUMNS} FROM conversation_links WHERE local_conversation_id = ?1 AND is_active = 1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(params![local_id], link_from_row).optional()?)
}

const CONVERSATION_COLUMNS: &str = "local_conversation_id, platform, automation_status, \
     last_non_paused_automation_status, pause_reason, last_error, execution_state, consecutive_failure_count, \
     repeated_message_count, repeated_renewal_count, last_message_fingerprint, last_renewal_fingerprint, title, \
     summary, last_message_id, last_message_at, cooldown_until, paused_at, created_at, updated_at";
/// How many columns `CONVERSATION_COLUMNS` names.
const CONVERSATION_FIELDS: usize = 20;

fn conversation_from_row(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        local_conversation_id: row.get(0)?,
        platform: row.get(1)?,
        automation_status: row.get(2)?,
        last_non_paused_automation_status: row.get(3)?,
        pause_reason: row.get(4)?,
        last_error: row.get(5)?,
        execution_state: row.get(6)?,
        consecutive_failure_count: row.get(7)?,
        repeated_message_count: row.get(8)?,
        repeated_renewal_count: row.get(9)?,
        last_message_fingerprint: row.get(10)?,
        last_renewal_fingerprint: row.get(11)?,
        title: row.get(12)?,
        summary: row.get(13)?,
        last_message_id: row.get(14)?,
        last_message_at: row.get(15)?,
        cooldown_until: row.get(16)?,
        paused_at: row.get(17)?,
        created_at: row.get(18)?,
        updated_at: row.get(19)?,
        active_link: None,
    })
}

/// Conversations, each with its active link, in one statement; a `WHERE`
/// and `ORDER BY` after it name the conversation's columns `c.`. The
/// dispatcher reads one conversation this way right before every delivery
/// (each statement after a commit starts from an empty page cache), the
/// conversations list a page.
fn conversations_with_links_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {}, {} FROM local_conversations c {ACTIVE_LINK_OF_C}",
            qualified("c", CONVERSATION_COLUMNS),
            qualified("l", LINK_COLUMNS)
        )
    })
}

fn conversation_by_id_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("{} WHERE c.local_conversation_id = ?1", conversations_with_links_sql()))
}

pub(super) fn conversation_by_id(conn: &Connection, id: &str) -> Result<Option<Conversation>, StoreError> {
    let mut stmt = conn.prepare_cached(conversation_by_id_sql())?;
    Ok(stmt.query_row(params![id], conversation_with_link).optional()?)
}

/// A row of [`conversations_with_links_sql`]: the conversation's columns,
/// then its active link's (all NULL without one).
fn conversation_with_link(row: &Row<'_>) -> rusqlite::Result<Conversation> {
    let mut conv = conversation_from_row(row)?;
    let link_id: Option<String> = row.get(CONVERSATION_FIELDS)?;
    conv.active_link = link_id.map(|_| link_at(row, CONVERSATION_FIELDS)).transpose()?;
    Ok(conv)
}

const JOB_COLUMNS: &str = "job_id, local_conversation_id, message_id, status, payload_kind, payload, \
     target_snapshot, attempt_count, max_attempts, next_attempt_at, last_attempt_at, last_error, log_path, \
     started_at, finished_at, created_at, updated_at";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    Ok(Job {
        job_id: row.get(0)?,
        local_conversation_id: row.get(1)?,
        message_id: row.get(2)?,
        status: row.get(3)?,
        payload_kind: row.get(4)?,
        payload: row.get(5)?,
        target_snapshot: row.get(6)?,
        attempt_count: row.get(7)?,
        max_attempts: row.get(8)?,
        next_attempt_at: row.get(9)?,
        last_attempt_at: row.get(10)?,
        last_error: row.get(11)?,
        log_path: row.get(12)?,
        started_at: row.get(13)?,
        finished_at: row.get(14)?,
        created_at: row.get(15)?,
        updated_at: row.get(16)?,
    })
}

/// Reads, all through the read pool.
impl Store {
    pub fn message(&self, id: &str) -> Result<Option<Message>, StoreError> {
        self.reads.with(|c| message_by_id(c, id, true))
    }

    pub fn messages(&self, f: &MessageFilter, page: Page) -> Result<(Vec<Message>, Option<u64>), StoreError> {
        let mut w = Where::default();
        w.eq("platform", text(&f.platform))
            .eq("conversation_id", text(&f.conversation_id))
            .eq("role", text(&f.role));
        let cols = MESSAGE_COLUMNS.replacen("raw_text", "NULL", 1);
        self.reads.with(|c| {
            page_query(
                c,
                &format!("SELECT {cols} FROM messages"),
                &w,
                "observed_at DESC, id DESC",
                page,
                |r| message_from_row(r, false),
            )
        })
    }

    pub fn conversation(&self, id: &str) -> Result<Option<Conversation>, StoreError> {
        self.reads.with(|c| conversation_by_id(c, id))
    }

    pub fn conversations(
        &self,
        f: &ConversationFilter,
        page: Page,
    ) -> Result<(Vec<Conversation>, Option<u64>), StoreError> {
        let mut w = Where::default();
        w.eq("c.platform", text(&f.platform))
            .eq("c.automation_status", f.status.map(|s| Value::Text(s.as_str().into())));
        self.reads.with(|c| {
            let order = "c.updated_at DESC, c.local_conversation_id DESC";
            page_query(c, conversations_with_links_sql(), &w, order, page, conversation_with_link)
        })
    }

    pub fn links(&self, f: &LinkFilter, page: Page) -> Result<(Vec<Link>, Option<u64>), StoreError> {
        let mut w = Where::default();
        w.eq("platform", text(&f.platform))
            .eq("remote_conversation_id", text(&f.remote_conversation_id))
            .eq("local_conversation_id", text(&f.local_conversation_id))
            .eq("client_id", text(&f.client_id))
            .eq("is_active", f.active.map(|a| Value::Integer(a as i64)));
        self.reads.with(|c| {
            let base = format!("SELECT {LINK_COLUMNS} FROM conversation_links");
            page_query(c, &base, &w, "observed_at DESC, link_id DESC", page, link_from_row)
        })
    }

    pub fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM renewal_jobs WHERE job_id = ?1");
        self.reads.with(|c| Ok(c.prepare_cached(&sql)?.query_row(params![id], job_from_row).optional()?))
    }

    pub fn jobs(&self, f: &JobFilter, page: Page) -> Result<(Vec<Job>, Option<u64>), StoreError> {
        let mut w = Where::default();
        w.eq("status", f.status.map(|s| Value::Text(s.as_str().into())))
            .eq("local_conversation_id", text(&f.local_conversation_id))
            .eq("message_id", text(&f.message_id));
        self.reads.with(|c| {
            let base = format!("SELECT {JOB_COLUMNS} FROM renewal_jobs");
            page_query(c, &base, &w, "created_at DESC, job_id DESC", page, job_from_row)
        })
    }

    /// Pending jobs due at `now`, oldest due first (the dispatcher's scan).
    pub fn due_jobs(&self, now: i64, limit: usize) -> Result<Vec<Job>, StoreError> {
        self.reads.with(|c| due_jobs_on(c, now, limit))
    }

    /// The persisted system automation state; `running` when never set.
    pub fn system_state(&self) -> Result<SystemState, StoreError> {
        self.reads.with(|c| {
            let row: Option<(String, i64)> = c
                .prepare_cached("SELECT value_json, updated_at FROM kv WHERE key = ?1")?
                .query_row(params![SYSTEM_STATE_KEY], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(row.map(|(json, at)| parse_system_state(&json, at)).unwrap_or_default())
        })
    }

    /// Every conversation that is not `manual`, with its active link's
    /// remote id, for the plugins' `state_snapshot`.
    pub fn automated_conversations(&self) -> Result<Vec<AutomatedConversation>, StoreError> {
        self.reads.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT lc.local_conversation_id, lc.platform, l.remote_conversation_id, lc.automation_status,
                        lc.pause_reason, lc.execution_state
                 FROM local_conversations lc
                 LEFT JOIN conversation_links l ON l.local_conversation_id = lc.local_conversation_id AND l.is_active = 1
                 WHERE lc.automation_status != 'manual'
                 ORDER BY lc.local_conversation_id",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(AutomatedConversation {
                    local_conversation_id: r.get(0)?,
                    platform: r.get(1)?,
                    remote_conversation_id: r.get(2)?,
                    automation_status: r.get(3)?,
                    pause_reason: r.get(4)?,
                    execution_state: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }

    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.reads.with(|c| {
            let messages = c.prepare_cached("SELECT COUNT(*) FROM messages")?.query_row([], |r| r.get(0))?;
            let conversations =
                c.prepare_cached("SELECT COUNT(*) FROM local_conversations")?.query_row([], |r| r.get(0))?;
            let mut jobs = JobCounts::default();
            let mut stmt = c.prepare_cached("SELECT status, COUNT(*) FROM renewal_jobs GROUP BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, JobStatus>(0)?, r.get::<_, i64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                match status {
                    JobStatus::Pending => jobs.pending = n,
                    JobStatus::Running => jobs.running = n,
                    JobStatus::Done => jobs.done = n,
                    JobStatus::Failed => jobs.failed = n,
                }
            }
            Ok(Counts { messages, conversations, jobs })
        })
    }
}

/// Reads the stored system state. A damaged value fails closed: the system
/// counts as `paused`, with a reason that says why, until someone resumes
/// it (which stores a good value) — never `running`, which would restart
/// automation a person may have paused.
pub(super) fn parse_system_state(json: &str, updated_at: i64) -> SystemState {
    let value: serde_json::Value = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
    let state = value.get("automation_state").and_then(|v| v.as_str()).and_then(AutomationState::parse);
    match state {
        Some(automation_state) => SystemState {
            automation_state,
            automation_reason: value.get("automation_reason").and_then(|v| v.as_str()).map(str::to_string),
            updated_at: Some(updated_at),
        },
        None => {
            log::error!(
                "store: the stored automation state is unreadable ({:?}); automation stays paused until resumed",
                crate::util::cut_chars(json, 200)
            );
            SystemState {
                automation_state: AutomationState::Paused,
                automation_reason: Some(UNREADABLE_STATE_REASON.to_string()),
                updated_at: Some(updated_at),
            }
        }
    }
}

/// The pause reason shown while the stored system state is unreadable.
pub const UNREADABLE_STATE_REASON: &str =
    "stored automation state unreadable; paused until resumed (POST /v1/system/resume)";

/// [`Store::due_jobs`] on a given connection: `examples/bench_renewal.rs`
/// times the dispatcher's own statement and row decoding with it.
pub fn due_jobs_on(c: &Connection, now: i64, limit: usize) -> Result<Vec<Job>, StoreError> {
    let mut stmt = c.prepare_cached(due_jobs_sql())?;
    let rows = stmt.query_map(params![now, limit as i64], job_from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The dispatcher's scan. `status = 'pending'` is spelled out, not bound:
/// only a literal lets SQLite use the partial index `renewal_jobs_due`.
pub fn due_jobs_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {JOB_COLUMNS} FROM renewal_jobs WHERE status = 'pending' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at, created_at LIMIT ?2"
        )
    })
}

#[cfg(test)]
#[path = "read_tests.rs"]
mod tests;
