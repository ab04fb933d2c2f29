//! The crash harness (`scripts/chaos`, docs/RELIABILITY.md): N cycles of
//! start the daemon → mixed load → `kill -9` at a random moment, with the
//! invariants checked on the database the killed process left behind and
//! again after the restart.
//!
//! Usage: chaos BIN [--cycles N] [--seed S] [--run-ms MIN:MAX]
//!                  [--ready-bound-ms MS] [--policy-slack-ms MS] [--keep]
//!
//! Checked after every kill, on the files as the killed daemon left them
//! (a read-only connection, nothing replayed or checkpointed first):
//! - lost: every message acknowledged (HTTP 200, bridge `ack`) is stored;
//! - duplicates: no job was delivered (frames the plugins received) more
//!   often than its counted attempts plus one per crash that found it
//!   `running` (docs/RENEWAL.md "Recovery at start": the one re-send);
//! - policy: the saved policy state is missing no answer older than one
//!   debounce window plus `--policy-slack-ms` (the daemon's own latency);
//! - system: the last acknowledged pause/resume is what is stored;
//! - `PRAGMA integrity_check` is `ok`.
//!
//! And after every restart: ready within `--ready-bound-ms`; no job still
//! `running` from before the start; `last_recovery` requeued exactly the
//! jobs and released exactly the locks the crash left. The last cycle ends
//! with a clean stop (SIGTERM, exit 0) and the checks once more.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http1.rs"]
mod http1;
#[path = "support/load.rs"]
mod load;

use daemon::{now_ms, Rng};
use load::{Ledger, Load, LoadConfig};

const DEBOUNCE_MS: i64 = 25;

const CONFIG: &str = r#"{
 "timed_jobs": {"interval_ms": 100, "settle_delay_ms": 0, "max_messages_per_tick": 500, "max_tasks_per_tick": 100},
 "renewal": {"execution_timeout_ms": 3000, "retry_base_delay_ms": 100, "retry_max_delay_ms": 1000,
             "recheck_delay_ms": 100, "recovery_delay_ms": 100},
 "policy": {"rate_limit": {"requests_per_minute_per_platform": 100000}, "backoff": {"base_ms": 50, "max_ms": 500},
            "circuit_breaker": {"failure_threshold": 5, "open_ms": 300}, "persistence_debounce_ms": 25}
}"#;

struct Options {
    bin: PathBuf,
    cycles: usize,
    seed: u64,
    run_ms: (u64, u64),
    ready_bound: Duration,
    policy_slack_ms: i64,
    keep: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        bin: PathBuf::new(),
        cycles: 100,
        seed: now_ms() as u64,
        run_ms: (200, 1500),
        ready_bound: Duration::from_millis(1000),
        policy_slack_ms: 250,
        keep: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| die(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--cycles" => o.cycles = value().parse().unwrap_or_else(|_| die("--cycles N")),
            "--seed" => o.seed = value().parse().unwrap_or_else(|_| die("--seed S")),
            "--ready-bound-ms" => o.ready_bound = Duration::from_millis(value().parse().unwrap_or(1000)),
            "--policy-slack-ms" => o.policy_slack_ms = value().parse().unwrap_or(250),
            "--run-ms" => {
                let v = value();
                let (a, b) = v.split_once(':').unwrap_or_else(|| die("--run-ms MIN:MAX"));
                o.run_ms = (a.parse().unwrap_or(200), b.parse().unwrap_or(1500));
            }
            "--keep" => o.keep = true,
            _ if o.bin.as_os_str().is_empty() => o.bin = PathBuf::from(arg),
            _ => die(&format!("unexpected argument {arg}")),
        }
    }
    if o.bin.as_os_str().is_empty() {
        die("usage: chaos BIN [--cycles N] [--seed S] [--run-ms MIN:MAX] [--ready-bound-ms MS] [--keep]");
    }
    o
}

fn die(msg: &str) -> ! {
    eprintln!("chaos: {msg}");
    std::process::exit(2)
}

/// What the checks found, over all cycles.
#[derive(Default)]
struct Tally {
    cycles: usize,
    acked: usize,
    lost: Vec<String>,
    stuck: usize,
    recovery_mismatch: Vec<String>,
    /// Per message: the latest finding (a message over the rule stays so).
    duplicates: HashMap<String, String>,
    deliveries: u64,
    /// Deliveries beyond the counted attempts, within the rule (the final
    /// database's view).
    resends: u32,
    policy_late: Vec<String>,
    policy_max_age_ms: i64,
    system_mismatch: Vec<String>,
    integrity: Vec<String>,
    ready: Vec<Duration>,
    relays: u64,
    switches: u64,
    crash_running: usize,
}

/// What one kill left behind, carried to the checks after the restart.
#[derive(Default)]
struct AtKill {
    running_jobs: usize,
    locked_conversations: usize,
}

struct Harness {
    o: Options,
    dir: PathBuf,
    state: PathBuf,
    config: PathBuf,
    run: String,
    rng: Rng,
    acked: HashSet<String>,
    deliveries: HashMap<String, u32>,
    /// Re-sends the documented rule allows per message: one per crash that
    /// found its job `running`.
    allowance: HashMap<String, u32>,
    t: Tally,
}

fn main() {
    let o = options();
    let dir = daemon::scratch_dir("baa-chaos");
    let (state, config) = (dir.join("state"), dir.join("config.json"));
    std::fs::write(&config, CONFIG).expect("config");
    println!("chaos: {} cycles, seed {}, dir {}", o.cycles, o.seed, dir.display());
    let mut h = Harness {
        rng: Rng::new(o.seed),
        run: format!("chaos{}", o.seed % 100_000),
        o,
        dir,
        state,
        config,
        acked: HashSet::new(),
        deliveries: HashMap::new(),
        allowance: HashMap::new(),
        t: Tally::default(),
    };
    let started = Instant::now();
    let mut at_kill: Option<AtKill> = None;
    for cycle in 0..h.o.cycles {
        at_kill = Some(h.cycle(cycle, at_kill.take()));
    }
    h.final_stop(at_kill);
    let ok = h.report(started.elapsed());
    if ok && !h.o.keep {
        let _ = std::fs::remove_dir_all(&h.dir);
    }
    std::process::exit(if ok { 0 } else { 1 });
}

impl Harness {
    fn start(&mut self, cycle: usize, previous: Option<AtKill>) -> daemon::Daemon {
        let spawn_ms = now_ms();
        let log = self.dir.join("daemon.log");
        let d = daemon::start(&self.o.bin, &self.state, &self.config, &log, Duration::from_secs(60))
            .unwrap_or_else(|e| die(&format!("cycle {cycle}: {e}")));
        self.t.ready.push(d.ready_in);
        if let Some(previous) = previous {
            self.after_restart(cycle, &d, spawn_ms, &previous);
        }
        d
    }

    fn cycle(&mut self, cycle: usize, previous: Option<AtKill>) -> AtKill {
        let mut d = self.start(cycle, previous);
        let ledger = Arc::new(Ledger::default());
        let config = LoadConfig {
            run: self.run.clone(),
            tag: format!("{}.c{cycle}", self.run),
            plugins: 4,
            ingest_clients: 2,
            relay_clients: 1,
            reader_clients: 0,
            switcher: true,
            conversations_per_plugin: 6,
            message_gap_ms: (2, 15),
            fail_percent: 10,
            record: true,
            seed: self.rng.next(),
        };
        let load = Load::start(&config, d.http, &d.ws_url, &ledger);
        let run_for = self.rng.range(self.o.run_ms.0, self.o.run_ms.1 + 1);
        std::thread::sleep(Duration::from_millis(run_for));
        let killed_at = now_ms();
        d.child.kill().expect("kill -9");
        let _ = d.child.wait();
        load.stop();
        self.t.cycles += 1;
        self.absorb(&ledger);
        self.after_kill(cycle, &ledger, killed_at)
    }

    fn absorb(&mut self, ledger: &Ledger) {
        use std::sync::atomic::Ordering::Relaxed;
        for (message, n) in ledger.deliveries.lock().unwrap().iter() {
            *self.deliveries.entry(message.clone()).or_default() += n;
        }
        self.t.deliveries += ledger.counts.deliveries.load(Relaxed);
        self.t.relays += ledger.counts.relays_ok.load(Relaxed);
        self.t.switches += ledger.counts.switches.load(Relaxed) + ledger.counts.system_switches.load(Relaxed);
    }

    /// The checks on the files the killed daemon left.
    fn after_kill(&mut self, cycle: usize, ledger: &Ledger, killed_at: i64) -> AtKill {
        let db = open(&self.state);
        self.check_integrity(cycle, &db);
        let acked = std::mem::take(&mut *ledger.acked.lock().unwrap());
        self.t.acked += acked.len();
        let mut present = db.prepare("SELECT 1 FROM messages WHERE id = ?1").unwrap();
        for id in acked {
            if present.query_row([&id], |_| Ok(())).optional().unwrap().is_none() {
                self.t.lost.push(format!("cycle {cycle}: {id}"));
            }
            self.acked.insert(id);
        }
        let running: Vec<String> =
            column(&db, "SELECT message_id FROM renewal_jobs WHERE status = 'running'");
        for message in &running {
            *self.allowance.entry(message.clone()).or_default() += 1;
        }
        self.t.crash_running += running.len();
        let _ = self.check_deliveries(cycle, &db);
        self.check_policy(cycle, &db, ledger, killed_at);
        self.check_system(cycle, &db, ledger);
        let locked = column(
            &db,
            "SELECT local_conversation_id FROM local_conversations WHERE execution_state != 'idle'",
        );
        AtKill { running_jobs: running.len(), locked_conversations: locked.len() }
    }

    fn check_integrity(&mut self, cycle: usize, db: &Connection) {
        let verdict: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        if verdict != "ok" {
            self.t.integrity.push(format!("cycle {cycle}: {verdict}"));
        }
    }

    /// Deliveries ≤ counted attempts + one per crash that found the job
    /// running. Returns how many deliveries the rule's allowance covered.
    fn check_deliveries(&mut self, cycle: usize, db: &Connection) -> u32 {
        let mut resends = 0;
        let mut attempts =
            db.prepare("SELECT attempt_count FROM renewal_jobs WHERE message_id = ?1").unwrap();
        for (message, &n) in &self.deliveries {
            let counted: u32 = attempts.query_row([message], |r| r.get(0)).optional().unwrap().unwrap_or(0);
            let allowed = self.allowance.get(message).copied().unwrap_or(0);
            resends += n.saturating_sub(counted).min(allowed);
            if n > counted + allowed {
                let finding = format!(
                    "cycle {cycle}: {message} delivered {n}×, {counted} attempts counted, {allowed} recovery re-send(s) allowed"
                );
                self.t.duplicates.insert(message.clone(), finding);
            }
        }
        resends
    }

    /// The oldest answer the saved policy document does not reflect must be
    /// younger, at the kill, than one debounce window (plus slack).
    fn check_policy(&mut self, cycle: usize, db: &Connection, ledger: &Ledger, killed_at: i64) {
        let doc: Option<String> = db
            .query_row(
                "SELECT value_json FROM browser_request_policy_state WHERE state_key = 'global'",
                [],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        let doc: Value = doc.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
        let mut saved: HashMap<String, i64> = HashMap::new();
        for target in doc["targets"].as_array().into_iter().flatten() {
            let latest = ["last_activity_at", "last_success_at", "last_failure_at"]
                .iter()
                .filter_map(|k| target[*k].as_i64())
                .max()
                .unwrap_or(0);
            let client = target["client_id"].as_str().unwrap_or_default().to_string();
            let entry = saved.entry(client).or_default();
            *entry = (*entry).max(latest);
        }
        let mut oldest_unsaved: HashMap<&str, i64> = HashMap::new();
        let answers = ledger.answers.lock().unwrap();
        for (client, at) in answers.iter().filter(|(_, at)| *at <= killed_at) {
            if *at > saved.get(client).copied().unwrap_or(0) {
                let e = oldest_unsaved.entry(client.as_str()).or_insert(*at);
                *e = (*e).min(*at);
            }
        }
        for (client, at) in oldest_unsaved {
            let age = killed_at - at;
            self.t.policy_max_age_ms = self.t.policy_max_age_ms.max(age);
            if age > DEBOUNCE_MS + self.o.policy_slack_ms {
                self.t.policy_late.push(format!(
                    "cycle {cycle}: {client}: an answer {age} ms before the kill is not saved"
                ));
            }
        }
    }

    fn check_system(&mut self, cycle: usize, db: &Connection, ledger: &Ledger) {
        let (Some(expected), false) = ledger.system.lock().unwrap().clone() else { return };
        let stored: Option<String> = db
            .query_row("SELECT value_json FROM kv WHERE key = 'system.automation'", [], |r| r.get(0))
            .optional()
            .unwrap();
        let stored: Value = stored.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        if stored["automation_state"].as_str() != Some(expected.as_str()) {
            self.t.system_mismatch.push(format!("cycle {cycle}: acknowledged {expected}, stored {stored}"));
        }
    }

    /// Recovery after a restart: nothing `running` from before the start,
    /// and `last_recovery` accounts for exactly what the crash left.
    fn after_restart(&mut self, cycle: usize, d: &daemon::Daemon, spawn_ms: i64, previous: &AtKill) {
        let db = open(&self.state);
        let stuck: i64 = db
            .query_row(
                "SELECT count(*) FROM renewal_jobs WHERE status = 'running' AND (started_at IS NULL OR started_at < ?1)",
                [spawn_ms],
                |r| r.get(0),
            )
            .unwrap();
        self.t.stuck += stuck as usize;
        let mut client = http1::Client::new(d.http, Duration::from_secs(10));
        let body = match client.call("GET", "/v1/timed-jobs", None) {
            Ok((200, body)) => body,
            other => die(&format!("cycle {cycle}: /v1/timed-jobs answered {other:?}")),
        };
        let doc: Value = serde_json::from_slice(&body).unwrap_or_default();
        let recovery = &doc["data"]["last_recovery"];
        let requeued = recovery["requeued_renewal_job_count"].as_u64().unwrap_or(u64::MAX) as usize;
        let released = recovery["recovered_execution_state_count"].as_u64().unwrap_or(u64::MAX) as usize;
        if requeued != previous.running_jobs || released != previous.locked_conversations {
            self.t.recovery_mismatch.push(format!(
                "cycle {cycle}: the crash left {} running / {} locked; recovery requeued {requeued} / released {released}",
                previous.running_jobs, previous.locked_conversations
            ));
        }
    }

    /// One more start after the last kill, then a clean stop.
    fn final_stop(&mut self, previous: Option<AtKill>) {
        let cycle = self.o.cycles;
        let mut d = self.start(cycle, previous);
        daemon::terminate(d.child.id());
        let status = d.child.wait().expect("wait");
        if !status.success() {
            self.t.integrity.push(format!("clean stop: exit {status}"));
        }
        let db = open(&self.state);
        self.check_integrity(cycle, &db);
        let present: HashSet<String> = column(&db, "SELECT id FROM messages").into_iter().collect();
        let lost: Vec<String> = self.acked.iter().filter(|id| !present.contains(*id)).cloned().collect();
        self.t.lost.extend(lost.into_iter().map(|id| format!("after the clean stop: {id}")));
        let running: Vec<String> = column(&db, "SELECT job_id FROM renewal_jobs WHERE status = 'running'");
        self.t.stuck += running.len();
        self.t.resends = self.check_deliveries(cycle, &db);
    }

    fn report(&self, took: Duration) -> bool {
        let t = &self.t;
        let mut ready = t.ready.clone();
        ready.sort();
        let (p50, max) = (ready[ready.len() / 2], *ready.last().unwrap());
        let rows: Vec<(&str, String, bool)> = vec![
            ("cycles (kill -9)", t.cycles.to_string(), true),
            ("acknowledged writes", t.acked.to_string(), t.acked > 0),
            ("lost", t.lost.len().to_string(), t.lost.is_empty()),
            ("stuck running after recovery", t.stuck.to_string(), t.stuck == 0),
            (
                "recovery count mismatches",
                t.recovery_mismatch.len().to_string(),
                t.recovery_mismatch.is_empty(),
            ),
            ("deliveries received", t.deliveries.to_string(), true),
            ("jobs running at a kill (one re-send allowed each)", t.crash_running.to_string(), true),
            ("re-sends after a crash (within the rule)", t.resends.to_string(), true),
            ("duplicate deliveries beyond the rule", t.duplicates.len().to_string(), t.duplicates.is_empty()),
            (
                "policy: oldest unsaved answer at kill",
                format!("{} ms", t.policy_max_age_ms),
                t.policy_late.is_empty(),
            ),
            ("system state mismatches", t.system_mismatch.len().to_string(), t.system_mismatch.is_empty()),
            ("integrity_check not ok", t.integrity.len().to_string(), t.integrity.is_empty()),
            (
                "ready after start p50 / max",
                format!("{} / {} ms", p50.as_millis(), max.as_millis()),
                max <= self.o.ready_bound,
            ),
            ("relays answered, switches acknowledged", format!("{} / {}", t.relays, t.switches), true),
        ];
        println!("\n| check | value | |\n|---|---|---|");
        for (name, value, ok) in &rows {
            println!("| {name} | {value} | {} |", if *ok { "ok" } else { "FAIL" });
        }
        println!("\nchaos: {} cycles in {:.1} s, seed {}", t.cycles, took.as_secs_f64(), self.o.seed);
        for problem in t
            .lost
            .iter()
            .chain(&t.recovery_mismatch)
            .chain(t.duplicates.values())
            .chain(&t.policy_late)
            .chain(&t.system_mismatch)
            .chain(&t.integrity)
            .take(40)
        {
            println!("  {problem}");
        }
        if max > self.o.ready_bound {
            println!("  ready took {} ms, bound {} ms", max.as_millis(), self.o.ready_bound.as_millis());
        }
        let ok = rows.iter().all(|(_, _, ok)| *ok);
        if !ok {
            println!("chaos: FAILED; state kept in {}", self.dir.display());
        }
        ok
    }
}

/// The database as it is on disk, read-only: nothing is replayed into the
/// file or checkpointed before the daemon's next start sees it.
fn open(state: &Path) -> Connection {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let db = Connection::open_with_flags(state.join("conductor.db"), flags).expect("open conductor.db");
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db
}

fn column(db: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = db.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}
