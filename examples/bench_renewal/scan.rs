//! `scan`: the dispatcher's own due-job scan, timed on a read-only
//! connection.

use std::time::Instant;

use baa_conductor::store::{due_jobs_on, due_jobs_sql};
use rusqlite::{params, Connection, OpenFlags};

use super::{die, now_ms};

pub(super) fn scan(db: &str, reps: usize, limit: i64) {
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .unwrap_or_else(|e| die(e));
    conn.pragma_update(None, "query_only", "ON").unwrap_or_else(|e| die(e));
    let counts: Vec<(String, i64)> = conn
        .prepare("SELECT status, COUNT(*) FROM renewal_jobs GROUP BY status")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .unwrap_or_else(|e| die(e));
    println!("table={}", counts.iter().map(|(s, c)| format!("{s}:{c}")).collect::<Vec<_>>().join(","));
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", due_jobs_sql()))
        .and_then(|mut s| s.query_map(params![now_ms(), limit], |r| r.get::<_, String>(3))?.collect())
        .unwrap_or_else(|e| die(e));
    println!("plan={}", plan.join(" | "));
    let mut lat = Vec::with_capacity(reps);
    let mut rows = 0usize;
    for _ in 0..reps {
        let t0 = Instant::now();
        let got = due_jobs_on(&conn, now_ms(), limit as usize).unwrap_or_else(|e| die(e));
        lat.push(t0.elapsed().as_nanos() as u64);
        rows = got.len();
        std::hint::black_box(got);
    }
    lat.sort_unstable();
    let q =
        |p: f64| lat[(((p / 100.0) * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1e6;
    println!("limit={limit}");
    println!("rows={rows}");
    println!("reps={reps}");
    println!("p50_ms={:.4}", q(50.0));
    println!("p99_ms={:.4}", q(99.0));
    println!("max_ms={:.4}", q(100.0));
}
