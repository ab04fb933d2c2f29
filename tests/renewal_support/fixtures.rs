//! Store fixtures written straight into `<state>/conductor.db`:
//! conversations, links, messages and due jobs, and single-column reads.

use std::path::Path;

use serde_json::json;

use crate::support::{db, now_ms, JobSeed};

pub fn seed_conversation(db_path: &Path, lc: &str, platform: &str, status: &str, execution_state: &str) {
    let now = now_ms();
    db(db_path)
        .execute(
            "INSERT INTO local_conversations (local_conversation_id, platform, automation_status,
                last_non_paused_automation_status, execution_state, paused_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'auto', ?4, CASE WHEN ?3 = 'paused' THEN ?5 END, ?5, ?5)",
            rusqlite::params![lc, platform, status, execution_state, now],
        )
        .expect("seed conversation");
}

/// An active link like the ingest would write for `tab_id` (no route when
/// `None`).
pub fn seed_link(
    db_path: &Path,
    link_id: &str,
    lc: &str,
    platform: &str,
    client_id: Option<&str>,
    remote: &str,
    tab_id: Option<i64>,
) {
    let now = now_ms();
    let page_url = format!("https://{platform}.example/c/{remote}");
    let payload = tab_id.map(|t| {
        json!({ "clientId": client_id, "conversationId": remote, "pageUrl": page_url, "tabId": t,
                "organizationId": null, "shellPage": false })
        .to_string()
    });
    db(db_path)
        .execute(
            "INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id,
                remote_conversation_id, page_url, page_title, route_path, route_pattern, route_params,
                target_kind, target_id, target_payload, is_active, observed_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Seeded', ?7, '/c/:conversationId', ?8, ?9, ?10, ?11, 1, ?12, ?12, ?12)",
            rusqlite::params![
                link_id,
                lc,
                platform,
                client_id,
                remote,
                page_url,
                format!("/c/{remote}"),
                json!({ "conversationId": remote }).to_string(),
                tab_id.map(|_| "browser.proxy_delivery"),
                tab_id.map(|t| format!("tab:{t}")),
                payload,
                now,
            ],
        )
        .expect("seed link");
}

pub fn seed_message(
    db_path: &Path,
    id: &str,
    platform: &str,
    conv: &str,
    role: &str,
    text: &str,
    observed_at: i64,
) {
    db(db_path)
        .execute(
            "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, observed_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6)",
            rusqlite::params![id, platform, conv, role, text, observed_at],
        )
        .expect("seed message");
}

/// A pending job of `lc` due now with a JSON payload whose text is `text`.
pub fn due_job(job_id: &str, lc: &str, text: &str) -> JobSeed {
    let mut j = JobSeed::new(job_id, "pending");
    j.local_conversation_id = lc.to_string();
    j.next_attempt_at = Some(now_ms());
    j.payload = json!({
        "kind": "renewal.message", "version": 1, "template": "summary_with_link", "text": text
    })
    .to_string();
    j
}

/// One column of one job, straight from the database.
pub fn job_column_i64(db_path: &Path, job_id: &str, column: &str) -> Option<i64> {
    db(db_path)
        .query_row(
            &format!("SELECT {column} FROM renewal_jobs WHERE job_id = ?1"),
            rusqlite::params![job_id],
            |r| r.get(0),
        )
        .expect("job column")
}

pub fn count_rows(db_path: &Path, sql: &str) -> i64 {
    db(db_path).query_row(sql, [], |r| r.get(0)).expect("count")
}
