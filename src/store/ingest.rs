//! The effects of one final message (docs/BRIDGE.md `browser.final_message`),
//! kept in exactly one place because the bridge and `POST /v1/messages` must
//! behave identically. Runs inside the writer's transaction: the message, its
//! local conversation, the repeated-message counter and the active link are
//! committed together or not at all.

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::json;

use super::model::*;
use super::read::{find_local_conversation, message_by_id, MESSAGE_COLUMNS};
use super::StoreError;
use super::{NewExecution, ReplySettings};
use crate::util::{fingerprint, new_id, summary};

/// A message ready for the writer: the input and everything derived from it
/// alone. `Store::ingest` prepares it on the caller's thread, because the
/// writer is the one serial stage of every ingest and should only run SQL.
pub struct PreparedMessage {
    pub input: NewMessage,
    summary: String,
    /// Of the text, for the repeated-message counter; assistant messages only.
    fingerprint: Option<String>,
    /// The link's delivery target: `target_id` and `target_payload`.
    target: Option<(String, String)>,
    /// Its instruction blocks, read when BAA is on (docs/BAA.md "Writing a block").
    pub(super) blocks: Vec<NewExecution>,
}

pub(super) fn prepare(input: NewMessage, settings: IngestSettings) -> PreparedMessage {
    let summary = summary(&input.text, settings.summary_limit);
    // The repeated-message counter (docs/RENEWAL.md "Loop protection") counts
    // assistant messages only: the loop it guards against is the assistant
    // answering the same thing to each renewal, and a person's own messages
    // in between must neither reset nor trip it.
    let fingerprint = (input.role == "assistant").then(|| fingerprint(&input.text));
    let target = input.tab_id.map(|tab| {
        let payload = json!({
            "clientId": input.client_id, "conversationId": input.conversation_id, "pageUrl": input.page_url,
            "tabId": tab, "organizationId": input.organization_id, "shellPage": input.shell_page,
        });
        (format!("tab:{tab}"), payload.to_string())
    });
    let blocks = match settings.baa {
        Some(baa) if input.role == "assistant" => {
            crate::baa::blocks_to_record(&input.message_id, &input.text, baa.max_blocks)
        }
        _ => Vec::new(),
    };
    PreparedMessage { input, summary, fingerprint, target, blocks }
}

pub(super) fn ingest(
    conn: &Connection,
    prepared: &PreparedMessage,
    settings: IngestSettings,
    now: i64,
) -> Result<IngestOutcome, StoreError> {
    let input = &prepared.input;
    // The common path is six statements, each a single index lookup:
    // insert, find, update, read the counter back, find the active link,
    // refresh it.
    if !insert_message(conn, input, &prepared.summary, now)? {
        return duplicate(conn, &input.message_id);
    }
    let Upserted { local_id, paused: automation_changed } =
        upsert_conversation(conn, prepared, settings, now)?;
    let link_id = upsert_active_link(conn, &local_id, prepared, now)?;
    let recorded_blocks = match settings.baa {
        Some(baa) if !prepared.blocks.is_empty() => {
            // A reply made here has no artifact to link to: every block is invalid.
            let reply = ReplySettings { artifact_base: String::new(), max_attempts: baa.max_attempts };
            super::executions::record_live(conn, &input.message_id, &local_id, &prepared.blocks, &reply, now)?
        }
        _ => 0,
    };
    let summary = prepared.summary.clone();
    let message = Message {
        message_id: input.message_id.clone(),
        platform: input.platform.clone(),
        conversation_id: input.conversation_id.clone(),
        role: input.role.clone(),
        raw_text: Some(input.text.clone()),
        summary: Some(summary),
        page_url: input.page_url.clone(),
        page_title: input.page_title.clone(),
        tab_id: input.tab_id,
        client_id: input.client_id.clone(),
        organization_id: input.organization_id.clone(),
        observed_at: input.observed_at,
        created_at: now,
    };
    Ok(IngestOutcome {
        message,
        local_conversation_id: Some(local_id),
        link_id: Some(link_id),
        duplicate: false,
        automation_changed,
        recorded_blocks,
    })
}

/// A known message id is a no-op; the answer still names the stored
/// message and where it lives.
fn duplicate(conn: &Connection, message_id: &str) -> Result<IngestOutcome, StoreError> {
    let message = message_by_id(conn, message_id, true)?
        .ok_or_else(|| StoreError::Sqlite("duplicate message vanished".into()))?;
    let local = find_local_conversation(conn, &message.platform, &message.conversation_id)?;
    let link_id = match &local {
        Some(lc) => active_link(conn, lc)?.map(|(link_id, _, _)| link_id),
        None => None,
    };
    Ok(IngestOutcome {
        message,
        local_conversation_id: local,
        link_id,
        duplicate: true,
        automation_changed: false,
        recorded_blocks: 0,
    })
}

/// `OR FAIL`: the `messages_seq_default` trigger (sql/004) makes SQLite
/// treat every insert into `messages` as one that may write several rows,
/// and such a statement under the default `ABORT` keeps a statement
/// journal, copying each page it touches first, so that it can undo its own
/// partial work. This insert writes one row and checks every constraint
/// before writing it, and a failed write rolls back the writer's whole
/// transaction anyway (`writer::commit_batch`), so `FAIL` loses nothing.
fn insert_message_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "INSERT OR FAIL INTO messages ({MESSAGE_COLUMNS}, seq)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13, (SELECT IFNULL(MAX(seq), 0) + 1 FROM messages))
             ON CONFLICT (id) DO NOTHING"
        )
    })
}

/// Inserts the message; false when its id is already stored.
fn insert_message(conn: &Connection, m: &NewMessage, summary: &str, now: i64) -> Result<bool, StoreError> {
    // The next sequence number: the newest message is never pruned, so the
    // sequence only grows (see `renewal::prune`).
    let inserted = conn.prepare_cached(insert_message_sql())?.execute(params![
        m.message_id,
        m.platform,
        m.conversation_id,
        m.role,
        m.text,
        summary,
        m.page_url,
        m.page_title,
        m.tab_id,
        m.client_id,
        m.organization_id,
        m.observed_at,
        now,
    ])?;
    Ok(inserted == 1)
}

/// A conversation's active link: its id, client and target id.
type ActiveLink = (String, Option<String>, Option<String>);

/// The conversation's active link, if it has one.
fn active_link(conn: &Connection, local_id: &str) -> Result<Option<ActiveLink>, StoreError> {
    Ok(conn
        .prepare_cached(ACTIVE_LINK)?
        .query_row(params![local_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .optional()?)
}

/// The message's effect on its conversation (`?1` id, `?2` observed_at,
/// `?3` message id, `?4` summary, `?5` page title, `?6` now, `?7`
/// fingerprint or NULL).
const APPLY_TO_CONVERSATION: &str = "UPDATE local_conversations SET
    last_message_id = CASE WHEN last_message_at IS NULL OR ?2 >= last_message_at THEN ?3 ELSE last_message_id END,
    summary = CASE WHEN last_message_at IS NULL OR ?2 >= last_message_at THEN ?4 ELSE summary END,
    last_message_at = CASE WHEN last_message_at IS NULL OR ?2 >= last_message_at THEN ?2 ELSE last_message_at END,
    title = COALESCE(?5, title),
    repeated_message_count = CASE WHEN ?7 IS NULL THEN repeated_message_count
        WHEN last_message_fingerprint = ?7 THEN repeated_message_count + 1 ELSE 1 END,
    last_message_fingerprint = COALESCE(?7, last_message_fingerprint),
    updated_at = MAX(updated_at, ?6)
 WHERE local_conversation_id = ?1";

const CONVERSATION_COUNTER: &str =
    "SELECT repeated_message_count, automation_status FROM local_conversations WHERE local_conversation_id = ?1";

const ACTIVE_LINK: &str =
    "SELECT link_id, client_id, target_id FROM conversation_links WHERE local_conversation_id = ?1 AND is_active = 1";

const REFRESH_LINK: &str = "UPDATE conversation_links SET page_url = ?2, page_title = ?3, route_path = ?4,
    route_pattern = ?5, route_params = ?6, target_kind = ?7, target_payload = ?8,
    observed_at = MAX(observed_at, ?9), updated_at = ?10
 WHERE link_id = ?1";

/// The statements every new message runs (the tests check that none of
/// them opens a temporary b-tree).
#[cfg(test)]
pub(super) fn per_message_statements() -> Vec<&'static str> {
    vec![
        insert_message_sql(),
        super::read::LINKED_LOCAL_CONVERSATION,
        APPLY_TO_CONVERSATION,
        CONVERSATION_COUNTER,
        ACTIVE_LINK,
        REFRESH_LINK,
    ]
}

/// The local conversation a message was applied to.
struct Upserted {
    local_id: String,
    /// The message paused the conversation (repeated message).
    paused: bool,
}

/// Finds or creates the local conversation and applies the message to it.
fn upsert_conversation(
    conn: &Connection,
    prepared: &PreparedMessage,
    settings: IngestSettings,
    now: i64,
) -> Result<Upserted, StoreError> {
    let m = &prepared.input;
    let local_id = match find_local_conversation(conn, &m.platform, &m.conversation_id)? {
        Some(id) => id,
        None => {
            let id = new_id("lc_");
            conn.prepare_cached(
                "INSERT INTO local_conversations (local_conversation_id, platform, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![id, m.platform, now])?;
            id
        }
    };
    // The newest message by observation time is the conversation's last
    // one, so a late-arriving older message never supersedes a newer one.
    // No `RETURNING`: SQLite buffers returned rows in a temporary b-tree it
    // opens per run; reading the two values back by key is cheaper.
    let fp = prepared.fingerprint.as_deref();
    conn.prepare_cached(APPLY_TO_CONVERSATION)?.execute(params![
        local_id,
        m.observed_at,
        m.message_id,
        prepared.summary,
        m.page_title,
        now,
        fp
    ])?;
    let (count, status): (i64, ConversationStatus) = conn
        .prepare_cached(CONVERSATION_COUNTER)?
        .query_row(params![local_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let paused =
        fp.is_some() && status == ConversationStatus::Auto && count >= settings.repeat_pause_threshold as i64;
    if paused {
        conn.prepare_cached(
            "UPDATE local_conversations SET automation_status = 'paused', pause_reason = ?3,
                paused_at = ?2, updated_at = MAX(updated_at, ?2)
             WHERE local_conversation_id = ?1",
        )?
        .execute(params![local_id, now, PauseReason::RepeatedMessage.as_str()])?;
        log::info!("store: conversation {local_id} paused: repeated_message ({count} in a row)");
    }
    Ok(Upserted { local_id, paused })
}

/// What a message says about the link it was seen through.
struct LinkFields<'a> {
    m: &'a NewMessage,
    target_id: Option<&'a str>,
    target_payload: Option<&'a str>,
    target_kind: Option<&'static str>,
    route: RouteInfo,
}

impl<'a> LinkFields<'a> {
    fn of(prepared: &'a PreparedMessage) -> LinkFields<'a> {
        LinkFields {
            m: &prepared.input,
            target_id: prepared.target.as_ref().map(|(id, _)| id.as_str()),
            target_payload: prepared.target.as_ref().map(|(_, payload)| payload.as_str()),
            target_kind: prepared.target.as_ref().map(|_| "browser.proxy_delivery"),
            route: prepared.input.route.clone().unwrap_or_default(),
        }
    }
}

/// Makes the link `(conversation, client, tab)` the conversation's single
/// active link, creating it when new — except that a message without a tab
/// leaves a routable active link as it is. Returns the active link's id.
fn upsert_active_link(
    conn: &Connection,
    local_id: &str,
    prepared: &PreparedMessage,
    now: i64,
) -> Result<String, StoreError> {
    let link = LinkFields::of(prepared);
    if let Some(link_id) = refresh_active_link(conn, local_id, &link, now)? {
        return Ok(link_id);
    }
    let (m, route) = (link.m, &link.route);
    let existing: Option<String> = conn
        .prepare_cached(LINK_OF_TARGET)?
        .query_row(params![local_id, m.client_id, link.target_id], |row| row.get(0))
        .optional()?;
    // Deactivate the others first: the partial unique index allows one active.
    conn.prepare_cached(DEACTIVATE_OTHER_LINKS)?.execute(params![local_id, existing, now])?;
    let link_id = existing.unwrap_or_else(|| new_id("link_"));
    conn.prepare_cached(UPSERT_LINK)?.execute(params![
        link_id,
        local_id,
        m.platform,
        m.client_id,
        m.conversation_id,
        m.page_url,
        m.page_title,
        route.path,
        route.pattern,
        route.params,
        link.target_kind,
        link.target_id,
        link.target_payload,
        m.observed_at,
        now,
    ])?;
    Ok(link_id)
}

/// The usual case: the message came through the conversation's active
/// link (same client and tab), found by the one-active index and refreshed
/// by key (no `RETURNING`, see above); or it has no tab and the active link
/// has one, which it keeps. `None` when the active link must change.
fn refresh_active_link(
    conn: &Connection,
    local_id: &str,
    link: &LinkFields<'_>,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let (m, route) = (link.m, &link.route);
    let Some((link_id, client_id, active_target)) = active_link(conn, local_id)? else {
        return Ok(None);
    };
    // A message without a tab (a script's POST, a plugin that lost the
    // tab) never replaces a link delivery can use with a route-less one:
    // one typo would silently stop renewal. It is stored; the link stays.
    if link.target_id.is_none() && active_target.is_some() {
        return Ok(Some(link_id));
    }
    if client_id.as_deref().unwrap_or("") != m.client_id.as_deref().unwrap_or("")
        || active_target.as_deref().unwrap_or("") != link.target_id.unwrap_or("")
    {
        return Ok(None);
    }
    conn.prepare_cached(REFRESH_LINK)?.execute(params![
        link_id,
        m.page_url,
        m.page_title,
        route.path,
        route.pattern,
        route.params,
        link.target_kind,
        link.target_payload,
        m.observed_at,
        now
    ])?;
    Ok(Some(link_id))
}

/// The conversation's link for a client and tab, active or not.
const LINK_OF_TARGET: &str = "SELECT link_id FROM conversation_links WHERE local_conversation_id = ?1
             AND IFNULL(client_id, '') = IFNULL(?2, '') AND IFNULL(target_id, '') = IFNULL(?3, '')";

const DEACTIVATE_OTHER_LINKS: &str = "UPDATE conversation_links SET is_active = 0, updated_at = ?3
         WHERE local_conversation_id = ?1 AND is_active = 1 AND link_id IS NOT ?2";

const UPSERT_LINK: &str =
    "INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id, remote_conversation_id,
            page_url, page_title, route_path, route_pattern, route_params, target_kind, target_id, target_payload,
            is_active, observed_at, created_at, updated_at)
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,1,?14,?15,?15)
         ON CONFLICT (link_id) DO UPDATE SET
            page_url = excluded.page_url, page_title = excluded.page_title, route_path = excluded.route_path,
            route_pattern = excluded.route_pattern, route_params = excluded.route_params,
            target_kind = excluded.target_kind, target_payload = excluded.target_payload, is_active = 1,
            observed_at = MAX(observed_at, excluded.observed_at), updated_at = excluded.updated_at";
