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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baa_conductor::store::{due_jobs_on, due_jobs_sql};
use rusqlite::{params, Connection, OpenFlags};
use serde_json::{json, Value};

#[path = "support/setup.rs"]
mod setup;

const DAY_MS: i64 = 86_400_000;
const TEMPLATE: &str = "[renewal] {summary}\n{link}";

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_renewal: {msg}");
    std::process::exit(1)
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

struct Rng(u64);

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

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn id(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}", self.next())
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo).max(1) as u64) as i64
    }
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

// ---------------------------------------------------------------- seed

fn seed(db: &str, n: u64, client: &str, run: &str) {
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

// ---------------------------------------------------------------- jobs

struct JobDoc {
    payload: String,
    snapshot: String,
}

/// The documents the projector writes (docs/RENEWAL.md step 8).
fn job_docs(
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

const INSERT_JOB: &str = "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload,
        payload_kind, target_snapshot, attempt_count, max_attempts, next_attempt_at, last_attempt_at, last_error,
        log_path, started_at, finished_at, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, 'json', ?6, ?7, 3, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

fn fill(db: &str, spec: &str, busy: u64) {
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

// ---------------------------------------------------------------- e2e

fn read_response(conn: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Result<u16, String> {
    let mut line = String::new();
    let mut status = 0u16;
    let mut length = None;
    let mut first = true;
    loop {
        line.clear();
        if conn.read_line(&mut line).map_err(|e| format!("read: {e}"))? == 0 {
            return Err("closed by the server".into());
        }
        let l = line.trim_end();
        if first {
            status =
                l.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {l:?}"))?;
            first = false;
        } else if l.is_empty() {
            break;
        } else if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().ok();
            }
        }
    }
    body.resize(length.ok_or("no Content-Length")?, 0);
    conn.read_exact(body).map_err(|e| format!("read body: {e}"))?;
    Ok(status)
}

fn http_connect(addr: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| die(format!("connect {addr}: {e}")));
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    BufReader::new(s)
}

fn http_get(addr: &str, path: &str) -> Value {
    let mut c = http_connect(addr);
    write!(c.get_mut(), "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| die(e));
    let mut body = Vec::new();
    let status = read_response(&mut c, &mut body).unwrap_or_else(|e| die(e));
    if status != 200 {
        die(format!("GET {path}: HTTP {status}"));
    }
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// The message of seeded conversation `i`, as `POST /v1/messages` or
/// `browser.final_message` carry it (`client_id` only over HTTP: over the
/// WebSocket the connection names the client).
fn e2e_body(run: &str, i: u64, client: Option<&str>) -> String {
    let remote = format!("{run}-conv-{i:06}");
    let mut body = json!({"platform": "chatgpt", "conversation_id": remote, "message_id": format!("{run}-msg-{i:06}"),
           "role": "assistant", "text": message_text(run, i), "page_url": page_url(&remote),
           "page_title": format!("Bench conversation {i}"), "tab_id": i + 1});
    if let Some(client) = client {
        body["client_id"] = client.into();
    }
    body.to_string()
}

/// What the poller saw: (jobs, done, failed, largest finished_at,
/// incomplete, done once a second).
type Polled = (i64, i64, i64, Option<i64>, bool, Vec<String>);

/// Polls DB from `t0`, once every 50 ms, until every job of the run is
/// finished (or TIMEOUT, or nothing moved for 15 s); records the number
/// done once a second.
fn spawn_poller(db: &str, run: &str, n: u64, t0: Instant, timeout: u64) -> std::thread::JoinHandle<Polled> {
    let reader = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| die(e));
    let (lo, hi) = (format!("{run}-msg-"), format!("{run}-msg."));
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(timeout);
        let mut last_progress = (Instant::now(), -1i64);
        let mut timeline = Vec::new();
        let mut next_tick = t0 + Duration::from_secs(1);
        loop {
            let row: (i64, i64, i64, Option<i64>) = reader
                .query_row(
                    "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'done'), COUNT(*) FILTER (WHERE status = 'failed'),
                            MAX(finished_at)
                     FROM renewal_jobs WHERE message_id >= ?1 AND message_id < ?2",
                    params![lo, hi],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap_or_else(|e| die(e));
            let (jobs, done, failed, max_finished) = row;
            while Instant::now() >= next_tick {
                timeline.push(done.to_string());
                next_tick += Duration::from_secs(1);
            }
            if done + failed >= n as i64 {
                return (jobs, done, failed, max_finished, false, timeline);
            }
            if done + failed + jobs != last_progress.1 {
                last_progress = (Instant::now(), done + failed + jobs);
            }
            if Instant::now() >= deadline || last_progress.0.elapsed() > Duration::from_secs(15) {
                return (jobs, done, failed, max_finished, true, timeline);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Prints the outcome of an end-to-end run; `t0_wall` is the wall clock
/// just before the first message left.
fn e2e_report(db: &str, run: &str, polled: Polled, t0_wall: i64) {
    let (jobs, done, failed, max_finished, incomplete, timeline) = polled;
    if incomplete {
        println!("incomplete=yes");
    }
    let secs = max_finished.map_or(f64::NAN, |m| (m - t0_wall) as f64 / 1000.0);
    println!("jobs={jobs}");
    println!("done={done}");
    println!("failed={failed}");
    println!("secs={secs:.3}");
    println!("rate={:.0}", done as f64 / secs);
    println!("done_per_sec_cumulative={}", timeline.join(","));
    let reader = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| die(e));
    let first_last: (Option<i64>, Option<i64>) = reader
        .query_row(
            "SELECT MIN(created_at), MAX(created_at) FROM renewal_jobs WHERE message_id >= ?1 AND message_id < ?2",
            params![format!("{run}-msg-"), format!("{run}-msg.")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap_or_else(|e| die(e));
    if let (Some(a), Some(b)) = first_last {
        println!("first_job_created_s={:.3}", (a - t0_wall) as f64 / 1000.0);
        println!("last_job_created_s={:.3}", (b - t0_wall) as f64 / 1000.0);
    }
}

#[allow(clippy::too_many_arguments)]
fn e2e(base: &str, db: &str, n: u64, conns: usize, run: &str, client: &str, timeout: u64) {
    let addr = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/').to_string();
    // Bodies built before the clock starts.
    let bodies: Vec<String> = (0..n).map(|i| e2e_body(run, i, Some(client))).collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(parking_lot::Mutex::new(None::<String>));
    let t0_wall = now_ms();
    let t0 = Instant::now();
    let poller = spawn_poller(db, run, n, t0, timeout);
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (bodies, next, errors, first_error, addr) =
                (bodies.clone(), next.clone(), errors.clone(), first_error.clone(), addr.clone());
            std::thread::spawn(move || {
                let mut conn = http_connect(&addr);
                let mut body = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    if i >= bodies.len() {
                        break;
                    }
                    let b = &bodies[i];
                    let req = format!(
                        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    );
                    let res = conn.get_mut().write_all(req.as_bytes()).map_err(|e| e.to_string()).and_then(|_| read_response(&mut conn, &mut body));
                    match res {
                        Ok(200) => {}
                        other => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().get_or_insert_with(|| format!("{other:?} {}", String::from_utf8_lossy(&body)));
                            conn = http_connect(&addr);
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("ingest thread");
    }
    let ingest_secs = t0.elapsed().as_secs_f64();
    println!("ingest_secs={ingest_secs:.3}");
    println!("ingest_rate={:.0}", n as f64 / ingest_secs);
    println!("ingest_errors={}", errors.load(Ordering::Relaxed));
    println!("ingest_first_error={}", first_error.lock().clone().unwrap_or_else(|| "-".into()));
    e2e_report(db, run, poller.join().expect("poller thread"), t0_wall);
}

/// The same run with the messages coming the way a plugin reports them:
/// the simulator (the only client, which also answers the deliveries)
/// replays them over its WebSocket with `--messages-file`. The clock starts
/// just before the simulator is spawned, so its start-up and handshake
/// count against us. Stops the simulator with SIGTERM at the end and
/// prints its summary lines.
#[allow(clippy::too_many_arguments)]
fn e2e_ws(sim: &str, ws_url: &str, db: &str, n: u64, run: &str, client: &str, timeout: u64) {
    let file = std::path::Path::new(db).with_file_name(format!("{run}-messages.jsonl"));
    let lines: String = (0..n).map(|i| e2e_body(run, i, None) + "\n").collect();
    std::fs::write(&file, lines).unwrap_or_else(|e| die(e));
    let t0_wall = now_ms();
    let t0 = Instant::now();
    let poller = spawn_poller(db, run, n, t0, timeout);
    let mut child = Command::new(sim)
        .args([
            "--url",
            ws_url,
            "--client-id",
            client,
            "--platform",
            "chatgpt",
            "--mode",
            "succeed",
            "--quiet",
        ])
        .arg("--messages-file")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| die(format!("cannot start {sim}: {e}")));
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut fed = None;
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("messages-file:") {
                fed = Some(t0.elapsed().as_secs_f64());
            }
            lines.push(line);
        }
        (fed, lines)
    });
    let polled = poller.join().expect("poller thread");
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let (fed, lines) = reader.join().expect("sim reader");
    match fed {
        Some(secs) => {
            println!("ingest_secs={secs:.3}");
            println!("ingest_rate={:.0}", n as f64 / secs);
        }
        None => println!("ingest_secs=incomplete"),
    }
    for line in lines.iter().filter(|l| l.starts_with("messages-file:") || l.starts_with("summary:")) {
        let key = if line.starts_with("summary:") { "sim_summary" } else { "sim_fed" };
        println!("{key}={}", line.split_once(": ").map_or(line.as_str(), |(_, v)| v));
    }
    let _ = std::fs::remove_file(&file);
    e2e_report(db, run, polled, t0_wall);
}

// ---------------------------------------------------------------- raw

fn raw(template: &str, db: &str, n: u64, batch: usize) {
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

// ---------------------------------------------------------------- scan

fn scan(db: &str, reps: usize, limit: i64) {
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

// ---------------------------------------------------------------- recovery

fn recovery(bin: &str, dir: &str, runs: usize) {
    let db = format!("{dir}/conductor.db");
    let saved = format!("{dir}/../recovery-source.db");
    std::fs::copy(&db, &saved).unwrap_or_else(|e| die(format!("cannot copy {db}: {e}")));
    let mut ready_ms = Vec::new();
    for run in 0..runs {
        std::fs::copy(&saved, &db).unwrap_or_else(|e| die(e));
        let _ = std::fs::remove_file(format!("{db}-wal"));
        let _ = std::fs::remove_file(format!("{db}-shm"));
        // Warm page cache for every run alike: read the file once.
        let _ = std::fs::read(&db).map(|b| std::hint::black_box(b.len()));
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(["serve", "--state-dir", dir, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| die(format!("cannot start {bin}: {e}")));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(b) = l.strip_prefix("baa-conductor listening on ") {
                        break b.to_string();
                    }
                }
                _ => die("the daemon exited before its ready line"),
            }
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        ready_ms.push(ms);
        let addr = base.trim_start_matches("http://").to_string();
        let timed = http_get(&addr, "/v1/timed-jobs");
        let rec = &timed["data"]["last_recovery"];
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = child.wait().unwrap_or_else(|e| die(e));
        let line = stderr.lines().find(|l| l.contains("recovery:")).unwrap_or("(no recovery line)");
        let line = line.split("] ").nth(1).unwrap_or(line);
        println!("run{run}.ready_ms={ms:.1}");
        println!("run{run}.requeued={}", rec["requeued_renewal_job_count"]);
        println!("run{run}.released={}", rec["recovered_execution_state_count"]);
        println!("run{run}.log={line}");
        println!("run{run}.exit={}", status.code().unwrap_or(-1));
    }
    std::fs::copy(&saved, &db).unwrap_or_else(|e| die(e));
    let _ = std::fs::remove_file(&saved);
    ready_ms.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    println!("median_ready_ms={:.1}", ready_ms[ready_ms.len() / 2]);
    println!("max_ready_ms={:.1}", ready_ms[ready_ms.len() - 1]);
    println!("ready_ms={}", ready_ms.iter().map(|m| format!("{m:.1}")).collect::<Vec<_>>().join(","));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| die("missing arguments (see the header of examples/bench_renewal.rs)"))
    };
    let num = |i: usize| -> u64 { arg(i).parse().unwrap_or_else(|_| die(format!("bad number {}", arg(i)))) };
    match arg(0).as_str() {
        "seed" => seed(&arg(1), num(2), &arg(3), &arg(4)),
        "fill" => fill(&arg(1), &arg(2), if args.len() > 3 { num(3) } else { 0 }),
        "e2e" => e2e(&arg(1), &arg(2), num(3), num(4) as usize, &arg(5), &arg(6), num(7)),
        "e2e-ws" => e2e_ws(&arg(1), &arg(2), &arg(3), num(4), &arg(5), &arg(6), num(7)),
        "raw" => raw(&arg(1), &arg(2), num(3), num(4) as usize),
        "scan" => scan(&arg(1), num(2) as usize, num(3) as i64),
        "recovery" => recovery(&arg(1), &arg(2), num(3) as usize),
        other => die(format!("unknown mode {other}")),
    }
}
