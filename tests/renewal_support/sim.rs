//! The plugin simulator (`baa-plugin-sim`) as a child process whose stdout
//! transcript is captured, so a test can count the frames it received.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::api::system;
use super::fixtures::{due_job, seed_conversation, seed_link};
use super::log::{is_job_line, is_stage, wait_log};
use super::WAIT;
use crate::support::{db, insert_job, now_ms, wait_until, Daemon, JobSeed};

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
