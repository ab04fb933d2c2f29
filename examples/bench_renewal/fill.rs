//! `seed` and `fill`: rows written straight into a stopped daemon's
//! database, in the shapes and id formats the daemon itself writes.

use std::time::Instant;

use rusqlite::params;
use serde_json::{json, Value};

use super::{
    die, finish_setup, now_ms, open_setup, ordered_id, page_url, target_payload, Rng, DAY_MS, TEMPLATE,
};

pub(super) fn seed(db: &str, n: u64, client: &str, run: &str) {
    let mut conn = open_setup(db);
    let now = now_ms() - 60_000;
    let tx = conn.transaction().unwrap_or_else(|e| die(e));
    {
        let mut conv = tx
            .prepare(
                "INSERT INTO local_conversations (local_conversation_id, platform, automation_status,
                    last_non_paused_automation_status, title, created_at, updated_at)
                 VALUES (?1, 'chatgpt', 'auto', 'auto', ?2, ?3, ?3)",
            )
            .unwrap_or_else(|e| die(e));
        let mut link = tx
            .prepare(
                "INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id,
                    remote_conversation_id, page_url, page_title, route_path, route_pattern, route_params,
                    target_kind, target_id, target_payload, is_active, observed_at, created_at, updated_at)
                 VALUES (?1, ?2, 'chatgpt', ?3, ?4, ?5, ?6, ?7, '/c/:conversationId', ?8,
                    'browser.proxy_delivery', ?9, ?10, 1, ?11, ?11, ?11)",
            )
            .unwrap_or_else(|e| die(e));
        for i in 0..n {
            let lc = ordered_id("lc_", now);
            let remote = format!("{run}-conv-{i:06}");
            let tab = i as i64 + 1;
            let title = format!("Bench conversation {i}");
            conv.execute(params![lc, title, now]).unwrap_or_else(|e| die(e));
            link.execute(params![
                ordered_id("link_", now),
                lc,
                client,
                remote,
                page_url(&remote),
                title,
                format!("/c/{remote}"),
                json!({"conversationId": remote}).to_string(),
                format!("tab:{tab}"),
                target_payload(client, &remote, tab),
                now
            ])
            .unwrap_or_else(|e| die(e));
        }
    }
    tx.commit().unwrap_or_else(|e| die(e));
    finish_setup(conn);
    println!("seeded={n}");
}

pub(super) struct JobDoc {
    pub(super) payload: String,
    pub(super) snapshot: String,
}

/// The documents the projector writes (docs/RENEWAL.md step 8).
pub(super) fn job_docs(
    message_id: &str,
    remote: &str,
    link_id: &str,
    client: &str,
    tab: i64,
    text: &str,
    observed_at: i64,
) -> JobDoc {
    let summary: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let link = format!("http://127.0.0.1:4317/artifact/msg/{message_id}.txt");
    let rendered = TEMPLATE.replace("{summary}", &summary).replace("{link}", &link);
    let payload = json!({
        "kind": "renewal.message", "version": 1, "template": "summary_with_link", "text": rendered,
        "sourceMessage": {"id": message_id, "platform": "chatgpt", "conversationId": remote, "observedAt": observed_at},
    });
    let snapshot = json!({
        "platform": "chatgpt", "linkId": link_id, "clientId": client, "pageUrl": page_url(remote),
        "pageTitle": "Bench conversation",
        "route": {"path": format!("/c/{remote}"), "pattern": "/c/:conversationId", "params": {"conversationId": remote}},
        "target": {"kind": "browser.proxy_delivery", "id": format!("tab:{tab}"),
                   "payload": serde_json::from_str::<Value>(&target_payload(client, remote, tab)).unwrap_or(Value::Null)},
    });
    JobDoc { payload: payload.to_string(), snapshot: snapshot.to_string() }
}

pub(super) const INSERT_JOB: &str = "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload,
        payload_kind, target_snapshot, attempt_count, max_attempts, next_attempt_at, last_attempt_at, last_error,
        log_path, started_at, finished_at, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 'json', ?6, ?7, 3, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

pub(super) fn fill(db: &str, spec: &str, busy: u64) {
    let mut plan: Vec<(String, u64)> = Vec::new();
    for part in spec.split(',') {
        let (status, count) = part.split_once(':').unwrap_or_else(|| die(format!("bad SPEC part {part}")));
        if !["done", "failed", "pending_due", "pending_future", "running"].contains(&status) {
            die(format!("unknown status {status}"));
        }
        plan.push((status.to_string(), count.parse().unwrap_or_else(|_| die(format!("bad count {count}")))));
    }
    let total: u64 = plan.iter().map(|(_, c)| c).sum();
    let mut conn = open_setup(db);
    let mut rng = Rng(0xf111 ^ total ^ (now_ms() as u64).rotate_left(17));
    let now = now_ms();
    let t0 = Instant::now();
    let tx = conn.transaction().unwrap_or_else(|e| die(e));
    {
        // 1000 conversations of their own, manual (the projector ignores them).
        let convs: Vec<(String, String, String)> = (0..1000)
            .map(|k| {
                let created = now - 30 * DAY_MS;
                (ordered_id("lc_", created), ordered_id("link_", created), format!("fill-conv-{k:04}"))
            })
            .collect();
        let mut conv = tx
            .prepare(
                "INSERT INTO local_conversations (local_conversation_id, platform, execution_state, title,
                    created_at, updated_at) VALUES (?1, 'chatgpt', ?2, 'Filled conversation', ?3, ?3)",
            )
            .unwrap_or_else(|e| die(e));
        for (k, (lc, _, _)) in convs.iter().enumerate() {
            let state = if (k as u64) < busy { "renewal_running" } else { "idle" };
            conv.execute(params![lc, state, now - 30 * DAY_MS]).unwrap_or_else(|e| die(e));
        }
        let mut ins = tx.prepare(INSERT_JOB).unwrap_or_else(|e| die(e));
        let log_path = "/tmp/state/logs/timed-jobs/2026-01-01.jsonl";
        let mut seq = 0u64;
        // Message ids unique across fills of the same database.
        let tag = rng.id("fill-");
        for (status, count) in &plan {
            for _ in 0..*count {
                seq += 1;
                let k = (rng.next() % 1000) as usize;
                let (lc, link, remote) = &convs[k];
                let message_id = format!("{tag}-msg-{seq:08}");
                let created = now - rng.range(60_000, 20 * DAY_MS);
                let text = format!("Filled answer {seq} for the due-job scan and pruning benchmarks; the summary of the assistant message that this renewal job delivers back into its tab.");
                let docs = job_docs(&message_id, remote, link, "firefox-main", k as i64 + 1, &text, created);
                let (st, attempts, next, last_attempt, last_error, started, finished) = match status.as_str()
                {
                    "done" => {
                        let f = created + rng.range(1_000, 120_000);
                        ("done", 1, None, Some(f - 500), None, Some(f - 500), Some(f))
                    }
                    "failed" => {
                        let f = created + rng.range(1_000, 600_000);
                        ("failed", 3, None, Some(f - 500), Some("no_active_client"), Some(f - 500), Some(f))
                    }
                    "pending_due" => {
                        ("pending", 0, Some(now - rng.range(1_000, 3_600_000)), None, None, None, None)
                    }
                    "pending_future" => {
                        ("pending", 0, Some(now + rng.range(DAY_MS, 7 * DAY_MS)), None, None, None, None)
                    }
                    _ => {
                        ("running", 0, Some(now - 60_000), Some(now - 60_000), None, Some(now - 60_000), None)
                    }
                };
                ins.execute(params![
                    ordered_id("job_", created),
                    lc,
                    message_id,
                    st,
                    docs.payload,
                    docs.snapshot,
                    attempts,
                    next,
                    last_attempt,
                    last_error,
                    log_path,
                    started,
                    finished,
                    created,
                    finished.unwrap_or(created)
                ])
                .unwrap_or_else(|e| die(e));
            }
        }
    }
    tx.commit().unwrap_or_else(|e| die(e));
    conn.execute_batch("ANALYZE").unwrap_or_else(|e| die(e));
    finish_setup(conn);
    println!("filled={total}");
    println!("fill_secs={:.1}", t0.elapsed().as_secs_f64());
}
