//! Starting and stopping the whole daemon: state directory, single-instance
//! lock, store, listeners, the ready file and ready line, then waiting for
//! SIGINT/SIGTERM and shutting down in order (stop accepting, finish
//! in-flight requests, flush the writer last). `main.rs` only maps the
//! outcome to an exit code.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::auth::{HostPolicy, OriginPolicy};
use crate::bridge;
use crate::config::Config;
use crate::http;
use crate::policy::{Policy, SystemClock};
use crate::store::{self, IngestSettings, StoreOptions};
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
    crate::util::tune_allocator();
    let config = Arc::new(config);
    let state_dir = config.state_dir.clone();
    prepare_state_dir(&state_dir)?;
    // Held for the life of the process; the OS drops it when we die, so a
    // restart after kill -9 just works.
    let _lock = lock_state_dir(&state_dir)?;
    // Signals are registered before the ready line so a stop sent right
    // after it is never lost.
    let mut signals =
        signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
            .map_err(|e| fatal(format!("cannot install signal handlers: {e}")))?;

    let (store_handle, store) = store::open(
        &state_dir,
        StoreOptions { readers: config.limits.http_threads * READERS_PER_HTTP_THREAD, max_page_count: None },
    )
    .map_err(|e| fatal(format!("cannot open {}: {e}", store::db_path(&state_dir).display())))?;

    // Recovery happens before the bridge or the ticker can act: every lock is
    // released and interrupted deliveries wait for the recovery delay.
    let interval = config.timed_jobs.interval_ms;
    let delay = config.renewal.effective_recovery_delay_ms(interval) as i64;
    let recovery =
        store.recover(now_ms(), delay).map_err(|e| fatal(format!("recovery at start failed: {e}")))?;
    log::info!(
        "recovery: {} execution locks released, {} running jobs requeued",
        recovery.recovered_execution_state_count,
        recovery.requeued_renewal_job_count
    );
    let policy = start_policy(&config, &store)?;
    let sweeper =
        policy.spawn_sweeper().map_err(|e| fatal(format!("cannot start the policy sweeper: {e}")))?;
    let log_dir = state_dir.join("logs").join("timed-jobs");
    let timed =
        ticker::new_status(&config, &log_dir, &["renewal.projector", "renewal.dispatcher", "store.pruner"]);
    *timed.last_recovery.lock() = Some(recovery);

    let http_listener = bind(&config.listen, "listen")?;
    let ws_listener = bind(&config.ws_listen, "ws_listen")?;
    let http_addr = local_addr(&http_listener)?;
    let ws_addr = local_addr(&ws_listener)?;
    let http_base = format!("http://{}", http_addr);
    let ws_url = format!("ws://{}/ws/browser", ws_addr);

    let public_base = config.public_base_url.clone().unwrap_or_else(|| http_base.clone());
    let hosts = HostPolicy::new(&config.allowed_hosts, &[http_addr, ws_addr], &[&public_base]);
    let (hub, bell) = bridge::new_hub(&config);
    let bridge_ctx = bridge::BridgeCtx {
        config: config.clone(),
        store: store.clone(),
        hub: hub.clone(),
        origins: OriginPolicy::new(&config.allowed_origins, &[&http_base]),
        hosts: hosts.clone(),
        ingest_settings: IngestSettings::from_config(&config),
    };
    let bridge = bridge::start(ws_listener, bridge_ctx, bell)
        .map_err(|e| fatal(format!("cannot start bridge: {e}")))?;
    let mut ctx = http::Ctx::new(
        config.clone(),
        store.clone(),
        hub.clone(),
        policy.clone(),
        timed.clone(),
        http_base.clone(),
        ws_url.clone(),
    );
    ctx.hosts = hosts;
    let ctx = Arc::new(ctx);
    let server = http::start(http_listener, ctx.clone())
        .map_err(|e| fatal(format!("cannot start HTTP server: {e}")))?;
    let log = ticker::log::spawn(log_dir, config.timed_jobs.log_retention_days)
        .map_err(|e| fatal(format!("cannot start the timed-jobs log: {e}")))?;
    let runners: Vec<Box<dyn ticker::Runner>> = vec![
        Box::new(ticker::projector::Projector {
            store: store.clone(),
            config: config.clone(),
            link_base: format!("{}/artifact/msg/", ctx.public_base),
        }),
        Box::new(ticker::dispatcher::Dispatcher {
            store: store.clone(),
            config: config.clone(),
            hub: hub.clone(),
            policy: policy.clone(),
            sent_in_run: Default::default(),
        }),
        Box::new(ticker::pruner::Pruner { store: store.clone(), config: config.clone() }),
    ];
    let settings = ticker::TickerSettings {
        config: config.clone(),
        store: store.clone(),
        log: log.sink.clone(),
        status: timed,
    };
    let mut ticker =
        ticker::spawn(settings, runners).map_err(|e| fatal(format!("cannot start the ticker: {e}")))?;

    write_ready_file(&state_dir, ctx.started_at, &http_base, &ws_url);
    // A closed or full stdout (a supervisor that stopped reading) must not
    // stop a daemon that is ready; `conductor.json` says the same thing.
    let mut out = std::io::stdout();
    if let Err(e) = writeln!(out, "baa-conductor listening on {http_base}").and_then(|()| out.flush()) {
        log::warn!("cannot write the ready line to stdout: {e}");
    }
    log::info!("ready: http {http_base}, ws {ws_url}, state dir {}", state_dir.display());

    if let Some(signal) = signals.forever().next() {
        log::info!("received signal {signal}; shutting down");
    }
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
    drop(policy);
    drop(ctx);
    drop(store);
    // The writer goes last: everything the other threads queued is committed.
    store_handle.shutdown();
    let _ = fs::remove_file(state_dir.join("conductor.json"));
    log::info!("stopped cleanly");
    Ok(())
}

/// Creates the request policy, restores its persisted state before anything
/// can ask it, and hands the writer its debounced save.
fn start_policy(config: &Config, store: &store::Store) -> Result<Arc<Policy>, Fatal> {
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

fn prepare_state_dir(dir: &Path) -> Result<(), Fatal> {
    for sub in [dir.to_path_buf(), dir.join("artifacts"), dir.join("logs").join("timed-jobs")] {
        fs::create_dir_all(&sub).map_err(|e| fatal(format!("cannot create {}: {e}", sub.display())))?;
    }
    Ok(())
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
    TcpListener::bind(addr).map_err(|e| fatal(format!("cannot bind {key} {addr}: {e}")))
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
