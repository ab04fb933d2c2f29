//! Starting and stopping the whole daemon: state directory, single-instance
//! lock, store, listeners, the ready file and ready line, then waiting for
//! SIGINT/SIGTERM and shutting down in order (stop accepting, finish
//! in-flight requests, flush the writer last): [`start`] returns the
//! [`Running`] daemon, [`Running::shutdown`] stops it, and [`run`] does
//! both around the wait for a signal. `main.rs` only maps the outcome to an
//! exit code.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use signal_hook::iterator::Signals;

use crate::auth::{HostPolicy, OriginPolicy};
use crate::baa;
use crate::bridge;
use crate::config::{Config, Role};
use crate::http;
use crate::policy::{Policy, SweeperHandle, SystemClock};
use crate::store::{
    self, AutomationState, IngestSettings, RecoveryReport, ReplySettings, Store, StoreOptions, SystemState,
};
use crate::ticker;
use crate::util::now_ms;

/// Read connections per `limits.http_threads`. Connection threads borrow
/// them per query; with only `http_threads` of them, 32 busy keep-alive
/// clients queued for 4 readers and the p99 of a point read went to ~9 ms on
/// 2 cores; 4 per thread brought it to ~3.5 ms at the same throughput
/// (docs/BENCHMARKS.md). Each reader's page cache is capped at 1 MiB.
const READERS_PER_HTTP_THREAD: usize = 4;

/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The last part of the grace, in which requests still waiting on a plugin
/// are failed with `shutting_down` and answer.
const SHUTDOWN_GIVE_UP: Duration = Duration::from_secs(1);

/// A fatal start-up or runtime error: exit code 1 with one clear line.
#[derive(Debug)]
pub struct Fatal(pub String);

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fatal {}

fn fatal(what: impl fmt::Display) -> Fatal {
    Fatal(what.to_string())
}

/// Runs the daemon until SIGINT or SIGTERM; `Ok` is a clean stop.
pub fn run(config: Config) -> Result<(), Fatal> {
    let mut running = start(config)?;
    running.wait_for_signal();
    running.shutdown();
    Ok(())
}

/// The started daemon: every role's handle. [`Running::shutdown`] takes
/// it down in the order ARCHITECTURE.md describes. Each handle also stops
/// and joins its threads when dropped, so a start that fails half-way (an
/// early `?` in [`start`]) or a panic leaves no thread behind; the fields
/// are declared in an order in which dropping them is safe.
pub struct Running {
    /// First: a block running is interrupted before anything it uses stops.
    baa_worker: Option<baa::worker::Handle>,
    ticker: ticker::Handle,
    server: http::server::Server,
    ctx: Arc<http::Ctx>,
    bridge: bridge::Handle,
    log: ticker::log::LogHandle,
    sweeper: SweeperHandle,
    policy: Arc<Policy>,
    store: Store,
    /// The writer goes last: everything the other threads queued is committed.
    store_writer: store::Handle,
    signals: Signals,
    state_dir: PathBuf,
    /// Held for the life of the process; the OS drops it when we die, so a
    /// restart after kill -9 just works.
    _lock: File,
}

/// Starts every role in order: state dir and lock, signals, store and
/// recovery, policy, listeners, bridge, HTTP, timed jobs; then writes the
/// ready file and prints the ready line.
pub fn start(config: Config) -> Result<Running, Fatal> {
    crate::alloc::tune();
    crate::fdlimit::raise_for(&config);
    let config = Arc::new(config);
    let state_dir = config.state_dir.clone();
    crate::state_dir::prepare(&state_dir).map_err(Fatal)?;
    let lock = lock_state_dir(&state_dir)?;
    crate::state_dir::refuse_emptied_database(&state_dir).map_err(Fatal)?;
    // Signals are registered before the ready line so a stop sent right
    // after it is never lost.
    let signals = Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| fatal(format!("cannot install signal handlers: {e}")))?;
    let (store_writer, store) = open_store(&config)?;
    let recovery = recover(&config, &store)?;
    let policy = start_policy(&config, &store)?;
    let sweeper =
        policy.spawn_sweeper().map_err(|e| fatal(format!("cannot start the policy sweeper: {e}")))?;
    let log_dir = state_dir.join("logs").join("timed-jobs");
    let timed = ticker::new_status(&config, &log_dir, &RUNNER_NAMES);
    *timed.last_recovery.lock() = Some(recovery);

    let Bound { http, ws, names } = Bound::bind(&config)?;
    let (hub, bell) = bridge::new_hub(&config);
    let ctx = http_ctx(&config, &store, hub, &policy, &timed, names);
    // Before the bridge and HTTP start: from the first ingest on, recorded
    // blocks ring the worker's inbox (it starts last; the rings wait).
    let (baa_inbox, baa_reply) = prepare_baa(&ctx)?;
    let bridge =
        bridge::start(ws, bridge_ctx(&ctx), bell).map_err(|e| fatal(format!("cannot start bridge: {e}")))?;
    let server =
        http::start(http, ctx.clone()).map_err(|e| fatal(format!("cannot start HTTP server: {e}")))?;
    let log = ticker::log::spawn(log_dir, config.timed_jobs.log_retention_days)
        .map_err(|e| fatal(format!("cannot start the timed-jobs log: {e}")))?;
    let ticker = start_ticker(&ctx, &log, timed)?;
    let baa_worker = match config.role {
        Role::Primary => Some(start_baa_worker(&ctx, baa_inbox, baa_reply, ticker.kicker())?),
        Role::Standby => None,
    };

    announce(&state_dir, &ctx);
    Ok(Running {
        baa_worker,
        ticker,
        server,
        ctx,
        bridge,
        log,
        sweeper,
        policy,
        store,
        store_writer,
        signals,
        state_dir,
        _lock: lock,
    })
}

/// The runners, in the order the ticker starts them.
const RUNNER_NAMES: [&str; 3] =
    [ticker::projector::Projector::NAME, ticker::dispatcher::Dispatcher::NAME, ticker::pruner::Pruner::NAME];

impl Running {
    /// Blocks until SIGINT or SIGTERM.
    pub fn wait_for_signal(&mut self) {
        if let Some(signal) = self.signals.forever().next() {
            log::info!("received signal {signal}; shutting down");
        }
    }

    /// Stops every role in order and removes the ready file.
    pub fn shutdown(self) {
        let Running {
            baa_worker,
            mut ticker,
            server,
            ctx,
            bridge,
            log,
            sweeper,
            policy,
            store,
            store_writer,
            signals,
            state_dir,
            _lock,
        } = self;
        // A block running is interrupted (its process group killed) and
        // recorded; the message's other blocks wait for the next start.
        drop(baa_worker);
        // No new runs, and a run in progress starts no new delivery (a job it
        // reaches goes back to pending, `shutting_down`); a delivery in flight
        // may still be answered during the HTTP grace, and is failed as
        // `shutting_down` right after it. The runners are joined after that.
        ticker.stop();
        // Requests still waiting on a plugin when one second of the grace is
        // left are failed, so their callers get a 503 rather than no answer.
        let hub = ctx.hub.clone();
        server.shutdown_with(SHUTDOWN_GRACE, SHUTDOWN_GIVE_UP, move || hub.fail_all_pending());
        drop(server);
        // With no HTTP request left the give-up above never ran: fail what still
        // waits on a plugin (a renewal delivery) as `shutting_down` now, before
        // closing the plugins would fail it as `client_disconnected` and charge
        // the job an attempt and its target a failure.
        ctx.hub.fail_all_pending();
        bridge.shutdown();
        ticker.shutdown();
        log.join();
        sweeper.shutdown();
        drop((policy, ctx, store, signals));
        // The writer goes last: everything the other threads queued is committed.
        store_writer.shutdown();
        let _ = fs::remove_file(state_dir.join("conductor.json"));
        log::info!("stopped cleanly");
    }
}

/// Opens the store with the daemon's read-pool size.
fn open_store(config: &Config) -> Result<(store::Handle, Store), Fatal> {
    let readers = config.limits.http_threads * READERS_PER_HTTP_THREAD;
    store::open(&config.state_dir, StoreOptions { readers, max_page_count: None })
        .map_err(|e| fatal(format!("cannot open {}: {e}", store::db_path(&config.state_dir).display())))
}

/// Recovery happens before the bridge or the ticker can act: every lock is
/// released and interrupted deliveries wait for the recovery delay.
fn recover(config: &Config, store: &Store) -> Result<RecoveryReport, Fatal> {
    let delay = config.renewal.effective_recovery_delay_ms(config.timed_jobs.interval_ms) as i64;
    let recovery =
        store.recover(now_ms(), delay).map_err(|e| fatal(format!("recovery at start failed: {e}")))?;
    log::info!(
        "recovery: {} execution locks released, {} running jobs requeued",
        recovery.recovered_execution_state_count,
        recovery.requeued_renewal_job_count
    );
    Ok(recovery)
}

/// Instruction blocks' recovery (blocks left `running` are `interrupted`)
/// and the worker's inbox, rung by the store writer from now on.
fn prepare_baa(ctx: &http::Ctx) -> Result<(baa::worker::Inbox, ReplySettings), Fatal> {
    let reply = ReplySettings {
        artifact_base: format!("{}/artifact/", ctx.public_base),
        max_attempts: ctx.config.renewal.max_attempts,
    };
    let recovery = ctx
        .store
        .recover_executions(&reply)
        .map_err(|e| fatal(format!("recovery of instruction blocks failed: {e}")))?;
    if recovery.interrupted > 0 {
        log::info!(
            "recovery: {} instruction blocks interrupted (failed, not run again), {} replies made",
            recovery.interrupted,
            recovery.replies.len()
        );
    }
    let inbox = baa::worker::inbox();
    ctx.store.on_blocks_recorded(inbox.bell());
    Ok((inbox, reply))
}

/// The instruction worker (primary nodes only: a standby acts on nothing).
fn start_baa_worker(
    ctx: &Arc<http::Ctx>,
    inbox: baa::worker::Inbox,
    reply: ReplySettings,
    kicker: ticker::Kicker,
) -> Result<baa::worker::Handle, Fatal> {
    let tools = baa::tools::Tools { ctx: ctx.clone(), home: std::env::var("HOME").ok() };
    let deps = baa::worker::Deps { store: ctx.store.clone(), tools, reply, kicker };
    inbox.spawn(deps).map_err(|e| fatal(format!("cannot start the instruction worker: {e}")))
}

/// Both listeners, bound early so that a taken port is a start-up error,
/// and the names their addresses give the daemon.
struct Bound {
    http: TcpListener,
    ws: TcpListener,
    names: Names,
}

struct Names {
    http_base: String,
    ws_url: String,
    hosts: HostPolicy,
}

impl Bound {
    fn bind(config: &Config) -> Result<Bound, Fatal> {
        let http = bind(&config.listen, "listen")?;
        let ws = bind(&config.ws_listen, "ws_listen")?;
        let (http_addr, ws_addr) = (local_addr(&http)?, local_addr(&ws)?);
        let http_base = format!("http://{}", http_addr);
        let ws_url = format!("ws://{}/ws/browser", ws_addr);
        let public_base = config.public_base_url.clone().unwrap_or_else(|| http_base.clone());
        let hosts = HostPolicy::new(&config.allowed_hosts, &[http_addr, ws_addr], &[&public_base]);
        Ok(Bound { http, ws, names: Names { http_base, ws_url, hosts } })
    }
}

/// What every HTTP handler needs.
fn http_ctx(
    config: &Arc<Config>,
    store: &Store,
    hub: Arc<bridge::Hub>,
    policy: &Arc<Policy>,
    timed: &Arc<ticker::Status>,
    names: Names,
) -> Arc<http::Ctx> {
    let Names { http_base, ws_url, hosts } = names;
    let mut ctx =
        http::Ctx::new(config.clone(), store.clone(), hub, policy.clone(), timed.clone(), http_base, ws_url);
    ctx.hosts = hosts;
    Arc::new(ctx)
}

/// What every bridge connection thread needs.
fn bridge_ctx(ctx: &http::Ctx) -> bridge::BridgeCtx {
    bridge::BridgeCtx {
        config: ctx.config.clone(),
        store: ctx.store.clone(),
        hub: ctx.hub.clone(),
        origins: OriginPolicy::new(&ctx.config.allowed_origins, &[&ctx.http_base]),
        hosts: ctx.hosts.clone(),
        ingest_settings: IngestSettings::from_config(&ctx.config),
    }
}

/// The three runners and the ticker that drives them.
fn start_ticker(
    ctx: &http::Ctx,
    log: &ticker::log::LogHandle,
    status: Arc<ticker::Status>,
) -> Result<ticker::Handle, Fatal> {
    let (config, store) = (&ctx.config, &ctx.store);
    let runners: Vec<Box<dyn ticker::Runner>> = vec![
        Box::new(ticker::projector::Projector {
            store: store.clone(),
            config: config.clone(),
            link_base: format!("{}/artifact/msg/", ctx.public_base),
        }),
        Box::new(ticker::dispatcher::Dispatcher {
            store: store.clone(),
            config: config.clone(),
            hub: ctx.hub.clone(),
            policy: ctx.policy.clone(),
            sent_in_run: Default::default(),
        }),
        Box::new(ticker::pruner::Pruner { store: store.clone(), config: config.clone() }),
    ];
    let settings = ticker::TickerSettings {
        config: config.clone(),
        store: store.clone(),
        log: log.sink.clone(),
        status,
    };
    ticker::spawn(settings, runners).map_err(|e| fatal(format!("cannot start the ticker: {e}")))
}

/// Writes the ready file and prints the ready line.
fn announce(state_dir: &Path, ctx: &http::Ctx) {
    write_ready_file(state_dir, ctx.started_at, &ctx.http_base, &ctx.ws_url);
    // A closed or full stdout (a supervisor that stopped reading) must not
    // stop a daemon that is ready; `conductor.json` says the same thing.
    let mut out = std::io::stdout();
    if let Err(e) = writeln!(out, "baa-conductor listening on {}", ctx.http_base).and_then(|()| out.flush()) {
        log::warn!("cannot write the ready line to stdout: {e}");
    }
    let ready =
        format!("ready: http {}, ws {}, state dir {}", ctx.http_base, ctx.ws_url, state_dir.display());
    match ctx.store.system_state().map(|s| automation_note(&s)) {
        Ok(None) => log::info!("{ready}, automation running"),
        Ok(Some(note)) => log::warn!("{ready}, {note}"),
        Err(e) => log::warn!("{ready}; cannot read the automation state: {e}"),
    }
}

/// What the start-up line says about an automation state other than
/// running, so a restart while paused (durable across restarts) is no
/// surprise: since when, why, and how to undo it.
fn automation_note(state: &SystemState) -> Option<String> {
    let what = match state.automation_state {
        AutomationState::Running => return None,
        AutomationState::Paused => "automation PAUSED: nothing is renewed until POST /v1/system/resume",
        AutomationState::Draining => "automation DRAINING: no new renewal jobs until POST /v1/system/resume",
    };
    let since = state.updated_at.map(|ms| {
        let (h, m) = ((ms / 3_600_000) % 24, (ms / 60_000) % 60);
        format!(" (since {} {h:02}:{m:02} UTC)", ticker::log::utc_date(ms))
    });
    let reason = match &state.automation_reason {
        Some(r) => format!(", reason {r:?}"),
        None => ", no reason given".to_string(),
    };
    Some(format!("{what}{}{reason}", since.unwrap_or_default()))
}

/// Creates the request policy, restores its persisted state before anything
/// can ask it, and hands the writer its debounced save.
fn start_policy(config: &Config, store: &Store) -> Result<Arc<Policy>, Fatal> {
    let dirty = store.clone();
    let policy = Policy::new(
        config.policy.clone(),
        Arc::new(SystemClock),
        Box::new(move || dirty.mark_policy_dirty()),
    );
    match store.policy_state() {
        Ok(Some(json)) => policy.restore(&json),
        Ok(None) => {}
        Err(e) => return Err(fatal(format!("cannot read the policy state: {e}"))),
    }
    // A strong reference: the writer's last save, at shutdown, runs after
    // every other holder of the policy is gone.
    let source = policy.clone();
    store.set_policy_source(
        Box::new(move || source.persisted_json()),
        Duration::from_millis(config.policy.persistence_debounce_ms),
    );
    Ok(policy)
}

fn lock_state_dir(dir: &Path) -> Result<File, Fatal> {
    let path = dir.join("conductor.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| fatal(format!("cannot open lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(fatal(format!(
            "another baa-conductor is already running on this state dir (lock file {} is held)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(fatal(format!("cannot lock {}: {e}", path.display()))),
    }
}

fn bind(addr: &str, key: &str) -> Result<TcpListener, Fatal> {
    crate::listen::bind(addr).map_err(|e| fatal(format!("cannot bind {key} {addr}: {e}")))
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, Fatal> {
    listener.local_addr().map_err(|e| fatal(format!("cannot read bound address: {e}")))
}

/// Writes `conductor.json` atomically (a temporary file, then a rename), so
/// a reader never sees half a file.
///
/// A daemon that cannot write it — a full disk — still starts: it serves
/// reads and answers writes with 507 until space is back, which is better
/// than refusing to start at all. A stale file from an earlier run (it
/// would name a dead pid) is removed, and the ready line still says where
/// the daemon listens.
fn write_ready_file(dir: &Path, started_at: i64, http_base: &str, ws_url: &str) {
    let doc = json!({
        "pid": std::process::id(), "http_base": http_base, "ws_url": ws_url,
        "started_at": started_at, "version": env!("CARGO_PKG_VERSION"),
    });
    let path: PathBuf = dir.join("conductor.json");
    let tmp = dir.join("conductor.json.tmp");
    if let Err(e) = fs::write(&tmp, doc.to_string()).and_then(|()| fs::rename(&tmp, &path)) {
        log::error!("cannot write {}: {e}; serving without it", path.display());
        let _ = fs::remove_file(&tmp);
        let _ = fs::remove_file(&path);
    }
}
