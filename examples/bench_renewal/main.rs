//! Renewal benchmarks (`scripts/bench_renewal`): end-to-end renewal
//! throughput through the daemon, the raw rusqlite job-lifecycle ceiling,
//! the dispatcher's due-job scan on a large table, and recovery at start.
//!
//! Every `DB` below is `STATE_DIR/conductor.db` of a *stopped* daemon whose
//! schema the daemon itself created (the bench starts it once on the empty
//! state dir and stops it first); set-up writes run with journal_mode=OFF in
//! one transaction and put the file back in WAL mode at the end.
//!
//! Usage:
//!   bench_renewal seed DB N CLIENT_ID RUN
//!       N local conversations, `auto`, each with one active link
//!       (`browser.proxy_delivery`, `tab:<i+1>`, target_payload
//!       {clientId, conversationId, pageUrl, tabId, organizationId, shellPage},
//!       client_id = CLIENT_ID) for remote conversation `RUN-conv-IIIIII`.
//!       Conversation and link ids are in the daemon's format (creation
//!       millisecond, then a counter), as if the daemon had created them now.
//!   bench_renewal fill DB SPEC [BUSY]
//!       Jobs in the shape the projector makes them, over 1000 conversations
//!       of their own (manual; BUSY of them `renewal_running`). SPEC is a
//!       comma list of STATUS:COUNT with STATUS one of done, failed,
//!       pending_due (next_attempt_at 1 s .. 1 h ago), pending_future
//!       (1 .. 7 days ahead), running (started a minute ago). Finished jobs
//!       finished within the last 20 days (the pruner keeps them). Ids in
//!       the daemon's format: the conversations' from 30 days ago, each
//!       job's from its created_at.
//!   bench_renewal e2e BASE_URL DB N CONNS RUN CLIENT_ID TIMEOUT_SECS
//!       POSTs one assistant message to each of the N seeded conversations
//!       (`POST /v1/messages` with client_id = CLIENT_ID and the seeded tab,
//!       so the ingest keeps the seeded link) from CONNS keep-alive
//!       connections, then polls DB read-only (every 50 ms) until the N jobs
//!       of this run are `done` (or failed), or TIMEOUT_SECS pass, or nothing
//!       moves for 15 s. secs = (largest finished_at of the run's jobs) −
//!       (wall clock just before the first POST). Prints key=value.
//!   bench_renewal e2e-ws SIM_BIN WS_URL DB N RUN CLIENT_ID TIMEOUT_SECS
//!       The same messages the way a plugin reports them: starts SIM_BIN
//!       (`baa-plugin-sim --client-id CLIENT_ID --mode succeed
//!       --messages-file`), which replays them as `browser.final_message`
//!       frames over its WebSocket (pipelined, at most 64 unanswered) and
//!       answers the deliveries; the clock starts before it is spawned.
//!       Polls and prints like `e2e`; ingest_secs is when the simulator
//!       reported every message acknowledged.
//!   bench_renewal raw TEMPLATE DB N BATCH
//!       The ceiling: copies TEMPLATE (empty schema) to DB with VACUUM INTO,
//!       opens it like the daemon's writer (WAL, synchronous=NORMAL) and runs
//!       the job lifecycle of N jobs with plain rusqlite, BATCH jobs per
//!       transaction in each phase: insert (the projector's INSERT, same
//!       payload and snapshot documents), claim (pending → running, by
//!       job_id), complete (running → done, by job_id). Prints the rate
//!       over the three phases.
//!   bench_renewal scan DB REPS LIMIT
//!       The dispatcher's due-job scan itself (`store::due_jobs_on`, the
//!       statement and row decoding `Store::due_jobs` runs) on a read-only connection,
//!       REPS times with now = the current time. Prints the query plan, rows
//!       returned and latency percentiles.
//!   bench_renewal recovery BIN STATE_DIR RUNS
//!       RUNS times: copies STATE_DIR/conductor.db aside first time, restores
//!       it before each run, spawns `BIN serve --state-dir STATE_DIR --listen
//!       127.0.0.1:0 --ws-listen 127.0.0.1:0` and times spawn → ready line;
//!       reads the `recovery: …` log line and `GET /v1/timed-jobs`
//!       `last_recovery`, then stops it with SIGTERM. Prints key=value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use serde_json::{json, Value};

#[path = "../support/http1.rs"]
mod http1;
#[path = "../support/rng.rs"]
mod rng;
#[path = "../support/setup.rs"]
mod setup;

use rng::Rng;

mod e2e;
mod fill;
mod raw;
mod recovery;
mod scan;

const DAY_MS: i64 = 86_400_000;
const TEMPLATE: &str = "[renewal] {summary}\n{link}";

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_renewal: {msg}");
    std::process::exit(1)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The counter part of `ordered_id`, shared like the daemon's.
static ORDERED: AtomicU64 = AtomicU64::new(0);

/// An id in the daemon's format (`util::new_id`): 11 hex digits of the
/// creation millisecond, then 5 of a counter. The daemon creates every
/// conversation, link and job id this way, so ids of rows created later
/// sort later; random ids here would put each new job's index entries
/// where the daemon never puts them (docs/BENCHMARKS_RUNTIME.md).
fn ordered_id(prefix: &str, ms: i64) -> String {
    let n = ORDERED.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:011x}{:05x}", ms.max(0) as u64 & 0xfff_ffff_ffff, n & 0xf_ffff)
}

fn open_setup(db: &str) -> Connection {
    setup::open(db).unwrap_or_else(|e| die(e))
}

fn finish_setup(conn: Connection) {
    setup::finish(conn).unwrap_or_else(|e| die(e));
}

fn page_url(conv: &str) -> String {
    format!("https://chatgpt.com/c/{conv}")
}

fn target_payload(client: &str, conv: &str, tab: i64) -> String {
    json!({"clientId": client, "conversationId": conv, "pageUrl": page_url(conv), "tabId": tab,
           "organizationId": null, "shellPage": false})
    .to_string()
}

fn message_text(run: &str, i: u64) -> String {
    format!(
        "Bench answer {i} of run {run}. The assistant wrote a final message in this tab; the projector turns it \
         into a renewal job and the dispatcher delivers the renewal back into the same conversation through the \
         plugin, one job at a time under a policy lease. Unique tail {i:08}."
    )
}

/// `GET path` on `addr` (host:port); dies unless the answer is 200 JSON.
fn http_get(addr: &str, path: &str) -> Value {
    let sock = addr.parse().unwrap_or_else(|e| die(format!("bad address {addr}: {e}")));
    let (status, body) =
        http1::Client::new(sock, Duration::from_secs(30)).call("GET", path, None).unwrap_or_else(|e| die(e));
    if status != 200 {
        die(format!("GET {path}: HTTP {status}"));
    }
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| die("missing arguments (see the header of examples/bench_renewal/main.rs)"))
    };
    let num = |i: usize| -> u64 { arg(i).parse().unwrap_or_else(|_| die(format!("bad number {}", arg(i)))) };
    match arg(0).as_str() {
        "seed" => fill::seed(&arg(1), num(2), &arg(3), &arg(4)),
        "fill" => fill::fill(&arg(1), &arg(2), if args.len() > 3 { num(3) } else { 0 }),
        "e2e" => e2e::e2e(&arg(1), &arg(2), num(3), num(4) as usize, &arg(5), &arg(6), num(7)),
        "e2e-ws" => e2e::e2e_ws(&arg(1), &arg(2), &arg(3), num(4), &arg(5), &arg(6), num(7)),
        "raw" => raw::raw(&arg(1), &arg(2), num(3), num(4) as usize),
        "scan" => scan::scan(&arg(1), num(2) as usize, num(3) as i64),
        "recovery" => recovery::recovery(&arg(1), &arg(2), num(3) as usize),
        other => die(format!("unknown mode {other}")),
    }
}
