//! Helpers shared by the renewal and timed-jobs tests (`tests/renewal_*.rs`,
//! `tests/timed_jobs_*.rs`): a fast default config, the timed-jobs JSONL log,
//! the renewal API, direct store fixtures, and the plugin simulator
//! (`baa-plugin-sim`) as a child process whose transcript is captured so a
//! test can count the `proxy_delivery` frames it received.
//!
//! Built on `tests/support` (the daemon, HTTP client and `wait_until`); a
//! test file declares both modules:
//! ```ignore
//! mod support;
//! mod renewal_support;
//! ```
//! Nothing here sleeps to synchronise: every wait polls a condition with a
//! deadline and panics with the relevant state when it is not met.

#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{db, enc, insert_job, now_ms, wait_until, Daemon, DaemonOpts, JobSeed};

/// Default deadline of every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------

/// Fast ticks (50 ms, no settle delay), exact retry delays (no jitter), and a
/// policy that stays out of the way (no real rate limit, 1 ms backoff, a
/// circuit that does not open). Retries and rechecks are far away unless a
/// test says otherwise, so a job is attempted once per test step.
pub fn base_config() -> Value {
    json!({
        "timed_jobs": { "interval_ms": 50, "settle_delay_ms": 0 },
        "renewal": {
            "retry_jitter_ratio": 0,
            "execution_timeout_ms": 5000,
            "retry_base_delay_ms": 60000,
            "retry_max_delay_ms": 300000,
            "recheck_delay_ms": 10000,
            "recovery_delay_ms": 60000
        },
        "policy": {
            "rate_limit": { "requests_per_minute_per_platform": 100000, "window_ms": 60000 },
            "backoff": { "base_ms": 1, "max_ms": 1 },
            "circuit_breaker": { "failure_threshold": 100000, "open_ms": 60000 }
        }
    })
}

/// Deep-merges `over` into `base` (objects merge key by key, anything else
/// replaces).
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// `base_config()` with `over` merged in.
pub fn config(over: Value) -> Value {
    let mut c = base_config();
    merge(&mut c, over);
    c
}

/// A daemon on `config(over)`.
pub fn start(over: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config(over)))
}

// ---------------------------------------------------------------------------
// The timed-jobs log
// ---------------------------------------------------------------------------

pub fn log_dir(d: &Daemon) -> PathBuf {
    d.state_dir().join("logs").join("timed-jobs")
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp, computed independently of
/// the daemon (days since the epoch → civil date).
pub fn utc_date(ms: i64) -> String {
    let mut days = ms.div_euclid(86_400_000);
    let mut year = 1970i64;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let months = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= months[month] {
        days -= months[month];
        month += 1;
    }
    format!("{year:04}-{:02}-{:02}", month + 1, days + 1)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Every complete line of every `*.jsonl` file of the log dir, oldest file
/// first. A last line still being written (no newline yet) is left out.
pub fn log_lines(d: &Daemon) -> Vec<Value> {
    let mut files: Vec<PathBuf> = match fs::read_dir(log_dir(d)) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => continue,
        };
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: line is not JSON ({e}): {line}", file.display()));
            out.push(v);
        }
    }
    out
}

/// Lines matching `pred`.
pub fn log_find(d: &Daemon, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    log_lines(d).into_iter().filter(|l| pred(l)).collect()
}

/// Waits for a line matching `pred`; panics with the log (tail) otherwise.
pub fn wait_log(d: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = log_lines(d).into_iter().find(|l| pred(l));
        found.is_some()
    });
    if !ok {
        panic!("no log line {what} within {WAIT:?}; log tail:\n{}", log_tail(d, 40));
    }
    found.unwrap()
}

/// The last `n` log lines, one per line, for failure messages.
pub fn log_tail(d: &Daemon, n: usize) -> String {
    let lines = log_lines(d);
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")
}

/// A line of `runner` with this `stage` (and `result` when given).
pub fn is_stage(l: &Value, runner: &str, stage: &str, result: Option<&str>) -> bool {
    l["runner"] == runner && l["stage"] == stage && result.is_none_or(|r| l["result"] == r)
}

/// A dispatcher line about `job_id`.
pub fn is_job_line(l: &Value, job_id: &str, stage: &str) -> bool {
    l["runner"] == "renewal.dispatcher" && l["stage"] == stage && l["details"]["job_id"] == job_id
}

/// Every dispatcher line about `job_id`, in order.
pub fn job_lines(d: &Daemon, job_id: &str) -> Vec<Value> {
    log_find(d, |l| l["runner"] == "renewal.dispatcher" && l["details"]["job_id"] == job_id)
}

/// `(stage, result)` of every dispatcher line about `job_id`, for messages.
pub fn job_story(d: &Daemon, job_id: &str) -> Vec<(String, String)> {
    job_lines(d, job_id)
        .iter()
        .map(|l| {
            (l["stage"].as_str().unwrap_or("").to_string(), l["result"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------

pub fn job(d: &Daemon, job_id: &str) -> Value {
    d.get(&format!("/v1/renewal/jobs/{}", enc(job_id))).data()
}

pub fn jobs_for_message(d: &Daemon, message_id: &str) -> Vec<Value> {
    let data = d.get(&format!("/v1/renewal/jobs?message_id={}&limit=500", enc(message_id))).data();
    data["jobs"].as_array().unwrap().clone()
}

pub fn all_jobs(d: &Daemon) -> Vec<Value> {
    let data = d.get("/v1/renewal/jobs?limit=500").data();
    data["jobs"].as_array().unwrap().clone()
}

pub fn conversation(d: &Daemon, lc: &str) -> Value {
    d.get(&format!("/v1/renewal/conversations/{}", enc(lc))).data()
}

/// Waits until the job satisfies `pred`; panics with the job and its log.
pub fn wait_job(d: &Daemon, job_id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = job(d, job_id);
        pred(&last)
    });
    if !ok {
        panic!("job {job_id} not {what} within {WAIT:?}: {last}\nits log: {:?}", job_story(d, job_id));
    }
    last
}

/// Waits until the conversation satisfies `pred`.
pub fn wait_conversation(d: &Daemon, lc: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(WAIT, || {
        last = conversation(d, lc);
        pred(&last)
    });
    assert!(ok, "conversation {lc} not {what} within {WAIT:?}: {last}");
    last
}

/// Waits for the one job of a message and returns it.
pub fn wait_job_for_message(d: &Daemon, message_id: &str) -> Value {
    let mut jobs = Vec::new();
    let ok = wait_until(WAIT, || {
        jobs = jobs_for_message(d, message_id);
        !jobs.is_empty()
    });
    if !ok {
        panic!("no job for message {message_id} within {WAIT:?}; log tail:\n{}", log_tail(d, 40));
    }
    assert_eq!(jobs.len(), 1, "one job per message: {jobs:?}");
    jobs[0].clone()
}

/// `POST /v1/messages`; returns `data`.
pub fn ingest(d: &Daemon, body: &Value) -> Value {
    d.post_json("/v1/messages", body).data()
}

/// A `POST /v1/messages` body with a route and (optionally) a tab and client.
pub fn message(
    platform: &str,
    conversation_id: &str,
    message_id: &str,
    role: &str,
    text: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) -> Value {
    json!({
        "platform": platform,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "role": role,
        "text": text,
        "page_url": format!("https://{platform}.example/c/{conversation_id}"),
        "page_title": format!("Title {conversation_id}"),
        "tab_id": tab_id,
        "client_id": client_id,
        "route": {
            "path": format!("/c/{conversation_id}"),
            "pattern": "/c/:conversationId",
            "params": { "conversationId": conversation_id }
        }
    })
}

/// Creates a local conversation whose active link points at `tab_id` of
/// `client_id` (by ingesting a *user* message, which the projector skips),
/// switches it to `auto` and returns its id.
pub fn auto_conversation(
    d: &Daemon,
    platform: &str,
    conversation_id: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) -> String {
    let lc = new_conversation(d, platform, conversation_id, client_id, tab_id);
    set_status(d, &lc, "auto");
    lc
}

/// Like `auto_conversation` but leaves it `manual`.
pub fn new_conversation(
    d: &Daemon,
    platform: &str,
    conversation_id: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) -> String {
    let mid = format!("user-{conversation_id}");
    let data =
        ingest(d, &message(platform, conversation_id, &mid, "user", "open the page", client_id, tab_id));
    data["local_conversation_id"].as_str().unwrap().to_string()
}

/// `POST /v1/renewal/conversations/:id/<status>` (auto, manual, paused).
pub fn set_status(d: &Daemon, lc: &str, status: &str) -> Value {
    d.post_json(&format!("/v1/renewal/conversations/{}/{status}", enc(lc)), &json!({})).data()
}

/// `POST /v1/system/<action>` (pause, resume, drain).
pub fn system(d: &Daemon, action: &str) -> Value {
    d.post_json(&format!("/v1/system/{action}"), &json!({})).data()
}

pub fn timed_jobs(d: &Daemon) -> Value {
    d.get("/v1/timed-jobs").data()
}

/// The `/v1/timed-jobs` entry of one runner.
pub fn runner(d: &Daemon, name: &str) -> Value {
    let data = timed_jobs(d);
    data["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no runner {name}: {data}"))
        .clone()
}

/// Waits until `name` has *finished* `n` more runs than it had when called
/// (its `runs` grew by `n + 1`, so the `n`-th new run has certainly ended).
pub fn wait_runs(d: &Daemon, name: &str, n: u64) {
    let start = runner(d, name)["runs"].as_u64().unwrap();
    let ok = wait_until(WAIT, || runner(d, name)["runs"].as_u64().unwrap() > start + n);
    assert!(ok, "{name} did not run {n} more times within {WAIT:?}: {}", runner(d, name));
}

// ---------------------------------------------------------------------------
// Store fixtures
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The plugin simulator
// ---------------------------------------------------------------------------

pub fn sim_bin() -> &'static str {
    env!("CARGO_BIN_EXE_baa-plugin-sim")
}

/// A running `baa-plugin-sim`; its stdout transcript is collected. Dropping
/// it kills the process (SIGKILL = the plugin disappears without a close).
pub struct Sim {
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    pub client_id: String,
}

impl Sim {
    /// Starts the simulator (`--url` and `--client-id` are added) without
    /// waiting for anything.
    pub fn spawn(d: &Daemon, client_id: &str, args: &[&str]) -> Sim {
        let mut cmd = Command::new(sim_bin());
        cmd.arg("--url").arg(d.ws_url()).arg("--client-id").arg(client_id).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn baa-plugin-sim");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => sink.lock().unwrap().push(line),
                    Err(_) => break,
                }
            }
        });
        Sim { child: Some(child), lines, client_id: client_id.to_string() }
    }

    /// Starts the simulator and waits until the daemon lists it as a
    /// connected client (a new connection, if the id was seen before).
    pub fn connect(d: &Daemon, client_id: &str, args: &[&str]) -> Sim {
        let before: Vec<Value> =
            client_entries(d, client_id).into_iter().map(|c| c["connection_id"].clone()).collect();
        let sim = Sim::spawn(d, client_id, args);
        let ok = wait_until(WAIT, || {
            client_entries(d, client_id)
                .iter()
                .any(|c| c["status"] == "connected" && !before.contains(&c["connection_id"]))
        });
        assert!(ok, "simulator {client_id} did not connect: {:?}", sim.transcript());
        sim
    }

    pub fn transcript(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Frames the simulator received (`<- {...}` transcript lines).
    pub fn received(&self) -> Vec<Value> {
        self.transcript()
            .iter()
            .filter_map(|l| l.strip_prefix("<- "))
            .filter_map(|t| serde_json::from_str::<Value>(t).ok())
            .collect()
    }

    pub fn deliveries(&self) -> Vec<Value> {
        self.received().into_iter().filter(|f| f["type"] == "proxy_delivery").collect()
    }

    /// `proxy_delivery` frames for one assistant message.
    pub fn deliveries_for(&self, message_id: &str) -> Vec<Value> {
        self.deliveries().into_iter().filter(|f| f["assistant_message_id"] == message_id).collect()
    }

    /// Waits until at least `n` `proxy_delivery` frames arrived.
    pub fn wait_deliveries(&self, n: usize) -> Vec<Value> {
        let ok = wait_until(WAIT, || self.deliveries().len() >= n);
        assert!(ok, "simulator got fewer than {n} proxy_delivery frames: {:?}", self.transcript());
        self.deliveries()
    }

    /// Waits for `n` `proxy_delivery` frames and asserts there are exactly
    /// `n`. The transcript is flushed by the simulator after it answered, so
    /// a delivery the daemon already recorded may still be on its way here.
    #[track_caller]
    pub fn expect_deliveries(&self, n: usize) -> Vec<Value> {
        let frames = if n == 0 { self.deliveries() } else { self.wait_deliveries(n) };
        assert_eq!(frames.len(), n, "proxy_delivery frames: {frames:?}");
        frames
    }

    /// SIGKILL and reap: the daemon sees the connection drop.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `/v1/browser` entries of one client id.
pub fn client_entries(d: &Daemon, client_id: &str) -> Vec<Value> {
    let data = d.get("/v1/browser").data();
    data["clients"].as_array().unwrap().iter().filter(|c| c["client_id"] == client_id).cloned().collect()
}

/// Waits until the daemon holds `client_id`'s login state for `platform`
/// (the simulator sends it after its hello, so a relay made right after
/// `Sim::connect` could still find no credentials: 409).
pub fn wait_login(d: &Daemon, client_id: &str, platform: &str) {
    let ok = wait_until(WAIT, || {
        let data = d.get("/v1/browser").data();
        data["login_states"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["client_id"] == client_id && l["platform"] == platform)
    });
    assert!(ok, "no login state of {client_id} for {platform}");
}

/// Waits until the daemon no longer lists `client_id` as connected.
pub fn wait_client_gone(d: &Daemon, client_id: &str) {
    let ok = wait_until(WAIT, || client_entries(d, client_id).iter().all(|c| c["status"] != "connected"));
    assert!(ok, "client {client_id} still connected");
}

/// Asserts `value` is within `[low, high]`.
#[track_caller]
pub fn assert_between(what: &str, value: i64, low: i64, high: i64) {
    assert!(
        low <= value && value <= high,
        "{what} = {value}, expected within [{low}, {high}] (offsets {} / {})",
        value - low,
        high - value
    );
}

/// Pauses the system and waits until both renewal runners have logged a run
/// skipped for it, so no run that still saw `running` is in progress.
pub fn pause_settled(d: &Daemon) {
    let t = now_ms();
    system(d, "pause");
    for r in ["renewal.projector", "renewal.dispatcher"] {
        wait_log(d, &format!("{r} scan_skipped/system_paused"), |l| {
            is_stage(l, r, "scan_skipped", Some("system_paused")) && l["ts"].as_i64().unwrap_or(0) >= t
        });
    }
}

/// The whitespace-collapsed text cut to `limit` chars, the last one `…`
/// when cut: what `{summary}` becomes (docs/RENEWAL.md).
pub fn summary_of(text: &str, limit: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= limit {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(limit - 1).collect();
    out.push('…');
    out
}

/// A conversation (`status`, idle) with an active deliverable link to
/// `tab_id` of `client_id`; the link id is `link-<lc>`, the platform
/// conversation `remote-<lc>`.
pub fn seed_route(
    db_path: &Path,
    lc: &str,
    platform: &str,
    status: &str,
    client_id: Option<&str>,
    tab_id: Option<i64>,
) {
    seed_conversation(db_path, lc, platform, status, "idle");
    seed_link(db_path, &format!("link-{lc}"), lc, platform, client_id, &format!("remote-{lc}"), tab_id);
}

/// The `ts` of a log line.
pub fn ts(line: &Value) -> i64 {
    line["ts"].as_i64().unwrap_or_else(|| panic!("no ts: {line}"))
}

/// Waits until the dispatcher's `stage` line about `job_id` is on disk. The
/// log is written asynchronously, after the store: a job's final state can
/// be visible before its last line is.
pub fn wait_job_line(d: &Daemon, job_id: &str, stage: &str) -> Value {
    wait_log(d, &format!("{stage} for {job_id}"), |l| is_job_line(l, job_id, stage))
}

/// `at` was computed as `now + delay` at a moment between the log lines
/// `after` and `before` (both written around that moment); asserts a delay
/// in `[low, high]` fits, whatever the machine's load.
#[track_caller]
pub fn assert_scheduled(what: &str, at: i64, after: &Value, before: &Value, low: i64, high: i64) {
    let (earliest, latest) = (at - ts(before), at - ts(after));
    assert!(
        earliest <= high && latest >= low,
        "{what}: scheduled {earliest}..{latest} ms after the event, expected a delay within [{low}, {high}]"
    );
}

/// Inserts jobs in one transaction, so no dispatcher run sees only some.
pub fn seed_jobs_at_once(db_path: &Path, jobs: &[JobSeed]) {
    let mut conn = db(db_path);
    let tx = conn.transaction().expect("begin");
    for job in jobs {
        insert_job(&tx, job);
    }
    tx.commit().expect("commit");
}

/// One due job per `(job_id, local_conversation_id)`, text `[renewal]
/// <job_id>`, due in the order given (10 ms apart, the last 10 ms ago) and
/// inserted at once, so one dispatcher scan takes them in that order.
pub fn seed_due_in_order(db_path: &Path, jobs: &[(&str, &str)]) {
    let now = now_ms();
    let seeds: Vec<JobSeed> = jobs
        .iter()
        .enumerate()
        .map(|(i, (id, lc))| {
            let mut j = due_job(id, lc, &format!("[renewal] {id}"));
            j.next_attempt_at = Some(now - 10 * (jobs.len() - i) as i64);
            j
        })
        .collect();
    seed_jobs_at_once(db_path, &seeds);
}
