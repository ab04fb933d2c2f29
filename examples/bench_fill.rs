//! Test-data filler of `scripts/bench`: writes rows straight into a stopped
//! daemon's `STATE_DIR/conductor.db` with rusqlite, much faster than going
//! through the API. The schema must already exist: the bench starts the
//! daemon once on the empty state dir and stops it with SIGTERM first, so
//! the tables are whatever the daemon's migrations make them (this tool
//! refuses a file with `user_version` 0; a column it names that a later
//! migration removed makes it fail loudly, never guess).
//!
//! Usage:
//!   bench_fill jobs DB N IDS_FILE   N renewal jobs over 1000 local
//!                                   conversations; every job id is written
//!                                   to IDS_FILE, one a line (the wrk script
//!                                   picks random ones from it)
//!   bench_fill messages DB N        N messages over 1000 conversations
//!   bench_fill search DB N          N messages of the search benchmark's
//!                                   corpus (support/corpus.rs: Zipf words),
//!                                   indexed for search as the daemon would
//!
//! Row shapes follow docs/RENEWAL.md: a job's payload is the projected
//! `renewal.message` document with the default template's text, its
//! target_snapshot is built from a browser.proxy_delivery link; ids are
//! `prefix` + 16 random hex digits, in random order. (That was the daemon's
//! own id format when this was written; it now makes time-ordered ids,
//! `util::new_id`. The read benchmarks look rows up by ids drawn at random,
//! and random keys keep the primary-key B-trees at their most scattered, a
//! worst case for those lookups.) Jobs are 20% pending,
//! 10% failed and 70% done, created over the last 25 days. Nothing here gives
//! the daemon's timed jobs work during a benchmark: pending jobs are due 1 to
//! 7 days from now (the dispatcher leaves them alone), no job is older than
//! the pruner's default 30-day retention, none is `running` (recovery at
//! start would requeue it), and the conversations are `manual` (the
//! projector makes no jobs from the messages). The data are deterministic
//! apart from the timestamps (fixed seed).
//!
//! The fill runs with journal_mode=OFF and synchronous=OFF in one transaction
//! (it is set-up, not measured) and puts the file back in WAL mode at the end.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use rusqlite::{params, Connection};
use serde_json::json;

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/rng.rs"]
mod rng;
#[path = "support/setup.rs"]
mod setup;

use rng::Rng;

const CONVERSATIONS: u64 = 1000;
const DAY_MS: i64 = 86_400_000;

const WORDS: &[&str] = &[
    "the",
    "daemon",
    "renewal",
    "conversation",
    "answer",
    "summary",
    "plugin",
    "browser",
    "message",
    "local",
    "script",
    "keeps",
    "asks",
    "again",
    "result",
    "context",
    "model",
    "tab",
    "page",
    "next",
    "step",
    "and",
    "with",
    "for",
    "a",
    "long",
    "short",
    "reply",
    "check",
    "state",
];

fn sentence(rng: &mut Rng, chars: usize) -> String {
    let mut out = String::with_capacity(chars + 16);
    while out.len() < chars {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
    }
    out
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_fill: {msg}");
    std::process::exit(1)
}

fn open(db: &str) -> Connection {
    setup::open(db).unwrap_or_else(|e| die(e))
}

fn finish(conn: Connection) {
    setup::finish(conn).unwrap_or_else(|e| die(e));
}

/// 1000 local conversations with one active link each; returns
/// (local_conversation_id, link_id, remote conversation id, tab id).
fn conversations(
    tx: &rusqlite::Transaction<'_>,
    rng: &mut Rng,
    now: i64,
) -> Vec<(String, String, String, i64)> {
    let mut conv = tx
        .prepare(
            "INSERT INTO local_conversations (local_conversation_id, platform, automation_status,
                last_non_paused_automation_status, title, summary, created_at, updated_at)
             VALUES (?1, 'chatgpt', 'manual', 'manual', ?2, ?3, ?4, ?4)",
        )
        .unwrap_or_else(|e| die(e));
    let mut link = tx
        .prepare(
            "INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id,
                remote_conversation_id, page_url, page_title, route_path, route_pattern, route_params,
                target_kind, target_id, target_payload, is_active, observed_at, created_at, updated_at)
             VALUES (?1, ?2, 'chatgpt', 'firefox-main', ?3, ?4, ?5, ?6, '/c/:conversationId', ?7,
                'browser.proxy_delivery', ?8, ?9, 1, ?10, ?10, ?10)",
        )
        .unwrap_or_else(|e| die(e));
    let mut out = Vec::new();
    for i in 0..CONVERSATIONS {
        let lc = rng.id("lc_");
        let link_id = rng.id("link_");
        let remote =
            format!("{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}", rng.next() as u32, i, i, i, rng.next() >> 16);
        let tab = (i % 40 + 1) as i64;
        let title = sentence(rng, 40);
        let url = format!("https://chatgpt.com/c/{remote}");
        conv.execute(params![lc, title, sentence(rng, 150), now - 30 * DAY_MS]).unwrap_or_else(|e| die(e));
        let payload = json!({"clientId": "firefox-main", "conversationId": remote, "pageUrl": url, "tabId": tab,
            "organizationId": null, "shellPage": false});
        link.execute(params![
            link_id,
            lc,
            remote,
            url,
            title,
            format!("/c/{remote}"),
            json!({ "conversationId": remote }).to_string(),
            format!("tab:{tab}"),
            payload.to_string(),
            now - 30 * DAY_MS
        ])
        .unwrap_or_else(|e| die(e));
        out.push((lc, link_id, remote, tab));
    }
    out
}

fn fill_jobs(db: &str, n: u64, ids_file: &str) {
    let started = Instant::now();
    let mut conn = open(db);
    let mut ids = BufWriter::new(File::create(ids_file).unwrap_or_else(|e| die(format!("{ids_file}: {e}"))));
    let mut rng = Rng(0x6a6f_6273);
    let now = now_ms();
    let tx = conn.transaction().unwrap_or_else(|e| die(e));
    let convs = conversations(&tx, &mut rng, now);
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                    target_snapshot, attempt_count, max_attempts, next_attempt_at, last_attempt_at, last_error,
                    log_path, started_at, finished_at, created_at, updated_at)
                 VALUES (?1,?2,?3,?4,?5,'json',?6,?7,3,?8,?9,?10,?11,?12,?13,?14,?15)",
            )
            .unwrap_or_else(|e| die(e));
        for i in 0..n {
            let job_id = rng.id("job_");
            let message_id = rng.id("msg_");
            let (lc, link_id, remote, tab) = &convs[(rng.next() % CONVERSATIONS) as usize];
            // Oldest first, up to 25 days back, strictly increasing.
            let created = now - 25 * DAY_MS + (i as i64) * (25 * DAY_MS / n.max(1) as i64);
            let status = match i % 10 {
                0 | 1 => "pending",
                2 => "failed",
                _ => "done",
            };
            let due = now + DAY_MS + (rng.next() % (6 * DAY_MS as u64)) as i64;
            let summary_len = 120 + (rng.next() % 80) as usize;
            let summary = sentence(&mut rng, summary_len);
            let text = format!("[renewal] {summary}\nhttp://127.0.0.1:4317/artifact/msg/{message_id}.txt");
            let payload = json!({"kind": "renewal.message", "version": 1, "template": "summary_with_link",
                "text": text, "sourceMessage": {"id": message_id, "platform": "chatgpt",
                "conversationId": remote, "observedAt": created - 10_000}});
            let url = format!("https://chatgpt.com/c/{remote}");
            let snapshot = json!({"platform": "chatgpt", "linkId": link_id, "clientId": "firefox-main",
                "pageUrl": url, "pageTitle": "Renewal conversation",
                "route": {"path": format!("/c/{remote}"), "pattern": "/c/:conversationId",
                    "params": {"conversationId": remote}},
                "target": {"kind": "browser.proxy_delivery", "id": format!("tab:{tab}"),
                    "payload": {"clientId": "firefox-main", "conversationId": remote, "pageUrl": url,
                        "tabId": tab, "organizationId": null, "shellPage": false}}});
            let day = "2025-01-01";
            let (attempts, next_at, last_at, err, log, started_at, finished_at) = match status {
                "pending" => (0, Some(due), None, None, None, None, None),
                "failed" => (
                    3,
                    None,
                    Some(created + 90_000),
                    Some("delivery_timeout"),
                    Some(day),
                    Some(created + 1000),
                    Some(created + 90_000),
                ),
                _ => (
                    1,
                    None,
                    Some(created + 1000),
                    None,
                    Some(day),
                    Some(created + 1000),
                    Some(created + 3000),
                ),
            };
            let log_path = log.map(|d| format!("logs/timed-jobs/{d}.jsonl"));
            stmt.execute(params![
                job_id,
                lc,
                message_id,
                status,
                payload.to_string(),
                snapshot.to_string(),
                attempts,
                next_at,
                last_at,
                err,
                log_path,
                started_at,
                finished_at,
                created,
                finished_at.unwrap_or(created)
            ])
            .unwrap_or_else(|e| die(e));
            writeln!(ids, "{job_id}").unwrap_or_else(|e| die(e));
        }
    }
    tx.commit().unwrap_or_else(|e| die(e));
    ids.flush().unwrap_or_else(|e| die(e));
    finish(conn);
    eprintln!("bench_fill: {n} jobs in {:.1} s", started.elapsed().as_secs_f64());
}

fn fill_messages(db: &str, n: u64) {
    let started = Instant::now();
    let mut conn = open(db);
    let mut rng = Rng(0x6d73_6773);
    let now = now_ms();
    let tx = conn.transaction().unwrap_or_else(|e| die(e));
    let convs = conversations(&tx, &mut rng, now);
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, page_url, page_title,
                    tab_id, client_id, organization_id, observed_at, created_at)
                 VALUES (?1, 'chatgpt', ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'firefox-main', NULL, ?9, ?10)",
            )
            .unwrap_or_else(|e| die(e));
        for i in 0..n {
            let (_, _, remote, tab) = &convs[(rng.next() % CONVERSATIONS) as usize];
            let observed = now - 30 * DAY_MS + (i as i64) * (30 * DAY_MS / n.max(1) as i64);
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            let text_len = 200 + (rng.next() % 400) as usize;
            let text = sentence(&mut rng, text_len);
            let summary: String = text.chars().take(200).collect();
            stmt.execute(params![
                rng.id("msg_"),
                remote,
                role,
                text,
                summary,
                format!("https://chatgpt.com/c/{remote}"),
                "Renewal conversation",
                tab,
                observed,
                observed + 5
            ])
            .unwrap_or_else(|e| die(e));
        }
    }
    // Indexed for search here, as the daemon would at its next start.
    baa_conductor::store::index_queued(&tx).unwrap_or_else(|e| die(e));
    tx.commit().unwrap_or_else(|e| die(e));
    finish(conn);
    eprintln!("bench_fill: {n} messages in {:.1} s", started.elapsed().as_secs_f64());
}

/// The search benchmark's messages, over 1000 conversations of three
/// platforms, half of them the assistant's. `seq` is set, as the daemon
/// sets it, so the index triggers queue every row as it is written, and the
/// queue is indexed before the commit, as the daemon's writer does.
fn fill_search(db: &str, n: u64) {
    let started = Instant::now();
    let mut conn = open(db);
    let mut rng = corpus::Rng(0x7365_6172);
    let zipf = corpus::Zipf::new();
    let now = now_ms();
    let tx = conn.transaction().unwrap_or_else(|e| die(e));
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, observed_at, created_at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
            )
            .unwrap_or_else(|e| die(e));
        for i in 0..n {
            let text = corpus::message(&mut rng, &zipf);
            let summary: String = text.chars().take(200).collect();
            let conversation = rng.next() % CONVERSATIONS;
            let platform = ["chatgpt", "claude", "gemini"][(conversation % 3) as usize];
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            let observed = now - 30 * DAY_MS + (i as i64) * (30 * DAY_MS / n.max(1) as i64);
            stmt.execute(params![
                format!("msg_{i:08}"),
                platform,
                format!("conv-{conversation}"),
                role,
                text,
                summary,
                observed,
                i as i64 + 1
            ])
            .unwrap_or_else(|e| die(e));
        }
    }
    baa_conductor::store::index_queued(&tx).unwrap_or_else(|e| die(e));
    tx.commit().unwrap_or_else(|e| die(e));
    finish(conn);
    eprintln!("bench_fill: {n} searchable messages in {:.1} s", started.elapsed().as_secs_f64());
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |s: &str| s.parse::<u64>().unwrap_or_else(|_| die(format!("not a count: {s:?}")));
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["jobs", db, n, ids] => fill_jobs(db, count(n), ids),
        ["messages", db, n] => fill_messages(db, count(n)),
        ["search", db, n] => fill_search(db, count(n)),
        _ => die("usage: bench_fill jobs DB N IDS_FILE | bench_fill messages DB N | bench_fill search DB N"),
    }
}
