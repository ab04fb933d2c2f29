//! What tests send and seed: API payloads, and rows written straight into
//! `<state>/conductor.db`.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::now_ms;

// ---------------------------------------------------------------------------
// API payloads
// ---------------------------------------------------------------------------
/// A minimal `POST /v1/messages` body; add fields with `msg[..] = ...`.
pub fn message_body(platform: &str, conversation_id: &str, message_id: &str, text: &str) -> Value {
    serde_json::json!({
        "platform": platform, "conversation_id": conversation_id,
        "message_id": message_id, "text": text,
    })
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Store fixtures (written straight into <state>/conductor.db)
// ---------------------------------------------------------------------------
/// A connection to a daemon's database; safe while it runs (WAL).
pub fn db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open conductor.db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn
}

/// A renewal job row. The projector that creates jobs is not in these
/// tests' scope, so jobs are inserted as fixtures.
#[derive(Debug, Clone)]
pub struct JobSeed {
    pub job_id: String,
    pub local_conversation_id: String,
    pub message_id: String,
    pub status: String,
    pub payload_kind: String,
    pub payload: String,
    pub target_snapshot: Option<String>,
    pub attempt_count: i64,
    pub max_attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub log_path: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl JobSeed {
    /// A job with a JSON payload whose `text` is `"renew <job_id>"`, due in
    /// an hour (so no dispatcher picks it up during a test).
    pub fn new(job_id: &str, status: &str) -> JobSeed {
        let now = now_ms();
        JobSeed {
            job_id: job_id.to_string(),
            local_conversation_id: "lc_seed".to_string(),
            message_id: format!("msg_{job_id}"),
            status: status.to_string(),
            payload_kind: "json".to_string(),
            payload: serde_json::json!({
                "kind": "renewal.message", "version": 1, "template": "summary_with_link",
                "text": format!("renew {job_id}"),
            })
            .to_string(),
            target_snapshot: None,
            attempt_count: 0,
            max_attempts: 3,
            next_attempt_at: if status == "pending" { Some(now + 3_600_000) } else { None },
            last_attempt_at: None,
            last_error: None,
            log_path: None,
            started_at: None,
            finished_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

pub fn seed_job(db_path: &Path, job: &JobSeed) {
    insert_job(&db(db_path), job);
}

/// Inserts one job row through `conn` (a connection or an open transaction).
pub fn insert_job(conn: &rusqlite::Connection, job: &JobSeed) {
    conn.execute(
        "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                target_snapshot, attempt_count, max_attempts, next_attempt_at, last_attempt_at, last_error,
                log_path, started_at, finished_at, created_at, updated_at)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
        rusqlite::params![
            job.job_id,
            job.local_conversation_id,
            job.message_id,
            job.status,
            job.payload,
            job.payload_kind,
            job.target_snapshot,
            job.attempt_count,
            job.max_attempts,
            job.next_attempt_at,
            job.last_attempt_at,
            job.last_error,
            job.log_path,
            job.started_at,
            job.finished_at,
            job.created_at,
            job.updated_at,
        ],
    )
    .expect("seed renewal job");
}

/// Every field of a renewal job as the API shows it (`/v1/renewal/jobs`,
/// `/v1/renewal/jobs/:job_id`): all present, `null` when unknown.
pub const JOB_KEYS: &[&str] = &[
    "job_id",
    "local_conversation_id",
    "message_id",
    "status",
    "payload_kind",
    "payload",
    "payload_text",
    "target_snapshot",
    "attempt_count",
    "max_attempts",
    "next_attempt_at",
    "last_attempt_at",
    "last_error",
    "log_path",
    "started_at",
    "finished_at",
    "created_at",
    "updated_at",
];

/// Runs SQL against a daemon's database (fixtures, e.g. equal timestamps).
pub fn exec_sql(db_path: &Path, sql: &str) {
    db(db_path).execute_batch(sql).unwrap_or_else(|e| panic!("fixture SQL failed ({e}): {sql}"));
}

/// Config that keeps the timed jobs (projector, dispatcher) from running
/// during a test, so fixtures stay exactly as inserted.
pub fn quiet_timed_jobs() -> Value {
    serde_json::json!({ "timed_jobs": { "interval_ms": 3_600_000 } })
}

/// Reads a file the daemon writes, e.g. `conductor.json`.
pub fn read_json(path: &Path) -> Option<Value> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}
