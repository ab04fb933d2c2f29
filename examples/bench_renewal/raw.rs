//! `raw`: the job lifecycle with plain rusqlite, the ceiling (a) is
//! compared with.

use std::time::Instant;

use rusqlite::{params, Connection, OpenFlags};

use super::fill::{job_docs, JobDoc, INSERT_JOB};
use super::{die, message_text, now_ms, ordered_id};

pub(super) fn raw(template: &str, db: &str, n: u64, batch: usize) {
    if std::path::Path::new(db).exists() {
        die(format!("{db} exists"));
    }
    {
        let t = Connection::open_with_flags(template, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| die(e));
        t.execute("VACUUM INTO ?1", params![db]).unwrap_or_else(|e| die(e));
    }
    let mut conn = Connection::open(db).unwrap_or_else(|e| die(e));
    conn.pragma_update(None, "journal_mode", "WAL").unwrap_or_else(|e| die(e));
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap_or_else(|e| die(e));
    let now = now_ms();
    let jobs: Vec<(String, String, String, JobDoc)> = (0..n)
        .map(|i| {
            let remote = format!("raw-conv-{i:06}");
            let mid = format!("raw-msg-{i:06}");
            let docs = job_docs(
                &mid,
                &remote,
                &ordered_id("link_", now),
                "sim-renew",
                i as i64 + 1,
                &message_text("raw", i),
                now,
            );
            (ordered_id("job_", now), ordered_id("lc_", now), mid, docs)
        })
        .collect();
    let t0 = Instant::now();
    for chunk in jobs.chunks(batch) {
        let tx = conn.transaction().unwrap_or_else(|e| die(e));
        {
            let mut ins = tx.prepare_cached(INSERT_JOB).unwrap_or_else(|e| die(e));
            for (job, lc, mid, docs) in chunk {
                ins.execute(params![
                    job,
                    lc,
                    mid,
                    "pending",
                    docs.payload,
                    docs.snapshot,
                    0,
                    now,
                    None::<i64>,
                    None::<String>,
                    "/tmp/log.jsonl",
                    None::<i64>,
                    None::<i64>,
                    now,
                    now
                ])
                .unwrap_or_else(|e| die(e));
            }
        }
        tx.commit().unwrap_or_else(|e| die(e));
    }
    let t_insert = t0.elapsed();
    for chunk in jobs.chunks(batch) {
        let tx = conn.transaction().unwrap_or_else(|e| die(e));
        {
            let mut claim = tx
                .prepare_cached(
                    "UPDATE renewal_jobs SET status = 'running', started_at = ?2, last_attempt_at = ?2, finished_at = NULL,
                        updated_at = MAX(updated_at, ?2) WHERE job_id = ?1 AND status = 'pending'",
                )
                .unwrap_or_else(|e| die(e));
            for (job, ..) in chunk {
                claim.execute(params![job, now_ms()]).unwrap_or_else(|e| die(e));
            }
        }
        tx.commit().unwrap_or_else(|e| die(e));
    }
    let t_claim = t0.elapsed();
    for chunk in jobs.chunks(batch) {
        let tx = conn.transaction().unwrap_or_else(|e| die(e));
        {
            let mut done = tx
                .prepare_cached(
                    "UPDATE renewal_jobs SET status = 'done', attempt_count = attempt_count + 1, last_error = NULL,
                        next_attempt_at = NULL, finished_at = ?2, updated_at = MAX(updated_at, ?2) WHERE job_id = ?1",
                )
                .unwrap_or_else(|e| die(e));
            for (job, ..) in chunk {
                done.execute(params![job, now_ms()]).unwrap_or_else(|e| die(e));
            }
        }
        tx.commit().unwrap_or_else(|e| die(e));
    }
    let total = t0.elapsed().as_secs_f64();
    println!("jobs={n}");
    println!("insert_secs={:.3}", t_insert.as_secs_f64());
    println!("claim_secs={:.3}", (t_claim - t_insert).as_secs_f64());
    println!("complete_secs={:.3}", total - t_claim.as_secs_f64());
    println!("secs={total:.3}");
    println!("rate={:.0}", n as f64 / total);
}
