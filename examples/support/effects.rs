//! What the daemon writes for one ingested message besides the message row —
//! the local conversation and its active link, created the first time, then
//! the conversation's last message, summary, title and repeat counter and
//! the link's observed_at — as plain prepared statements with the ids kept
//! in memory. The raw baselines of `bench_ws` and `bench_ingest` use it so
//! that "the same rows" can also mean the rows of those effects; shared
//! with `#[path]`, since each example is a crate of its own.

use std::collections::HashMap;

use rusqlite::{params, Connection};
use serde_json::json;

/// One message as the effects need it.
pub struct Message<'a> {
    pub message_id: &'a str,
    pub conversation_id: &'a str,
    pub client_id: Option<&'a str>,
    pub text: &'a str,
    pub summary: &'a str,
    pub page_url: &'a str,
    pub page_title: &'a str,
    pub tab_id: i64,
    pub observed_at: i64,
}

/// Remote conversation id → (local conversation id, link id).
#[derive(Default)]
pub struct Effects {
    known: HashMap<String, (String, String)>,
    next: u64,
}

impl Effects {
    /// Applies the effects of `m` inside the caller's transaction.
    pub fn apply(&mut self, conn: &Connection, m: &Message<'_>, now: i64) -> rusqlite::Result<()> {
        if !self.known.contains_key(m.conversation_id) {
            let ids = self.create(conn, m, now)?;
            self.known.insert(m.conversation_id.to_string(), ids);
        }
        let (lc, link) = &self.known[m.conversation_id];
        conn.prepare_cached(
            "UPDATE local_conversations SET last_message_id = ?2, summary = ?3, last_message_at = ?4,
                title = ?5, updated_at = ?6,
                repeated_message_count = CASE WHEN last_message_fingerprint = ?7 THEN repeated_message_count + 1 ELSE 1 END,
                last_message_fingerprint = ?7
             WHERE local_conversation_id = ?1",
        )?
        .execute(params![lc, m.message_id, m.summary, m.observed_at, m.page_title, now, fingerprint(m.text)])?;
        conn.prepare_cached(
            "UPDATE conversation_links SET observed_at = MAX(observed_at, ?2), updated_at = ?3 WHERE link_id = ?1",
        )?
        .execute(params![link, m.observed_at, now])?;
        Ok(())
    }

    fn create(&mut self, conn: &Connection, m: &Message<'_>, now: i64) -> rusqlite::Result<(String, String)> {
        self.next += 1;
        let lc = format!("lc_{:016x}", self.next);
        let link = format!("link_{:016x}", self.next);
        conn.prepare_cached(
            "INSERT INTO local_conversations (local_conversation_id, platform, created_at, updated_at)
             VALUES (?1, 'chatgpt', ?2, ?2)",
        )?
        .execute(params![lc, now])?;
        let payload = json!({"clientId": m.client_id, "conversationId": m.conversation_id,
            "pageUrl": m.page_url, "tabId": m.tab_id, "organizationId": null, "shellPage": false})
        .to_string();
        conn.prepare_cached(
            "INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id,
                remote_conversation_id, page_url, page_title, route_path, route_pattern, route_params,
                target_kind, target_id, target_payload, is_active, observed_at, created_at, updated_at)
             VALUES (?1, ?2, 'chatgpt', ?3, ?4, ?5, ?6, ?7, '/c/:conversationId', ?8,
                'browser.proxy_delivery', ?9, ?10, 1, ?11, ?12, ?12)",
        )?
        .execute(params![
            link,
            lc,
            m.client_id,
            m.conversation_id,
            m.page_url,
            m.page_title,
            format!("/c/{}", m.conversation_id),
            json!({"conversationId": m.conversation_id}).to_string(),
            format!("tab:{}", m.tab_id),
            payload,
            m.observed_at,
            now
        ])?;
        Ok((lc, link))
    }
}

/// FNV-1a of the text, as a stand-in for the daemon's fingerprint (same
/// cost class: one pass over the text).
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.split_whitespace().flat_map(|w| w.bytes().chain(std::iter::once(b' '))) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
