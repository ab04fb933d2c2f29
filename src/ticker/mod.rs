//! The timed-job ticker thread role. One named thread wakes every
//! `timed_jobs.interval_ms` (waiting on its stop channel with a deadline, so
//! shutdown is immediate and nothing polls) and starts each registered runner
//! in order: `renewal.projector` ([`projector`]), `renewal.dispatcher`
//! ([`dispatcher`]), `store.pruner` ([`pruner`]), each a [`Runner`]. Each
//! runner lives on its own named thread, so a long dispatcher run never
//! delays the projector; a tick that finds a runner still busy logs
//! `tick_overlap` and skips it, so a runner never overlaps itself. With
//! `role = "standby"` the runners are registered but stay idle.

mod delivery;
pub mod dispatcher;
mod job_lines;
pub mod log;
mod pipeline;
pub mod projector;
pub mod pruner;
mod reasons;
mod retry;

use crate::util::JoinOnDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::config::{Config, Role};
use crate::store::{AutomationState, RecoveryReport, Store};
use crate::util::{new_id, now_ms};
use log::LogSink;

/// What a run gets (docs/RENEWAL.md "Timed jobs").
pub struct RunContext {
    pub batch_id: String,
    pub now: i64,
    pub max_messages_per_tick: usize,
    pub max_tasks_per_tick: usize,
    pub settle_delay_ms: u64,
    pub interval_ms: u64,
    pub system: AutomationState,
    pub log: LogSink,
    pub runner: &'static str,
    /// Set when the daemon begins to stop: a run in progress starts no new
    /// delivery (see `RunContext::stopping`).
    stopping: Arc<AtomicBool>,
}

impl RunContext {
    /// Whether the daemon is stopping: the run should finish what it has
    /// started and begin nothing new.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn log(&self, stage: &'static str, result: &str, details: Value) {
        self.log.run_line(self.runner, &self.batch_id, stage, result, details);
    }
}

/// A run's outcome as `/v1/timed-jobs` shows it.
pub struct RunOutcome {
    pub result: RunResult,
    pub details: Value,
}

/// How a run ended (its `last_result`, and the `result` of its
/// `scan_skipped` / `scan_failed` / `prune_failed` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunResult {
    Ok,
    /// The system automation state is `paused`.
    SystemPaused,
    /// The system automation state is `draining` (the projector only).
    SystemDraining,
    StoreError,
}

impl RunResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::SystemPaused => "system_paused",
            RunResult::SystemDraining => "system_draining",
            RunResult::StoreError => "store_error",
        }
    }
}

pub trait Runner: Send + 'static {
    fn name(&self) -> &'static str;
    fn run(&mut self, ctx: &RunContext) -> RunOutcome;
}

/// One runner's counters for `/v1/timed-jobs`.
#[derive(Debug, Clone)]
pub struct RunnerStatus {
    pub name: &'static str,
    pub runs: u64,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub last_result: Option<RunResult>,
    pub last_details: Value,
    pub next_run_at: Option<i64>,
}

/// Shared, read by the HTTP API.
pub struct Status {
    pub interval_ms: u64,
    pub role: Role,
    pub log_dir: String,
    pub last_recovery: Mutex<Option<RecoveryReport>>,
    pub runners: Mutex<Vec<RunnerStatus>>,
}

pub fn new_status(config: &Config, log_dir: &std::path::Path, names: &[&'static str]) -> Arc<Status> {
    let runners = names
        .iter()
        .map(|name| RunnerStatus {
            name,
            runs: 0,
            last_started_at: None,
            last_finished_at: None,
            last_result: None,
            last_details: Value::Null,
            next_run_at: None,
        })
        .collect();
    Arc::new(Status {
        interval_ms: config.timed_jobs.interval_ms,
        role: config.role,
        log_dir: log_dir.display().to_string(),
        last_recovery: Mutex::new(None),
        runners: Mutex::new(runners),
    })
}

/// The ticker thread and the runner threads. Dropping it is
/// [`Handle::shutdown`].
pub struct Handle {
    stop: Option<Sender<()>>,
    kicks: Sender<&'static str>,
    stopping: Arc<AtomicBool>,
    /// Joined on drop, after the fields above.
    _join: JoinOnDrop<()>,
}

impl Handle {
    /// Stops ticking; a run in progress finishes what it has started (a
    /// delivery in flight) but starts nothing new, and ends by `shutdown`.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        self.stop.take();
    }

    /// Stops ticking, lets a run in progress finish, joins every thread.
    pub fn shutdown(self) {
        drop(self);
    }

    /// Lets another role start a runner before its next tick.
    pub fn kicker(&self) -> Kicker {
        Kicker { tx: self.kicks.clone() }
    }
}

/// Starts a runner now, out of turn (the instruction worker does, so a
/// `[baa]` reply job is delivered at once rather than at the next tick).
/// A runner still busy finishes its run first, then runs again.
#[derive(Clone)]
pub struct Kicker {
    tx: Sender<&'static str>,
}

impl Kicker {
    /// Never blocks; kicks beyond the few already queued are dropped (one
    /// run serves them all).
    pub fn kick(&self, runner: &'static str) {
        let _ = self.tx.try_send(runner);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A runner's thread. Dropping it ends the runner's inbox (`tx` is
/// declared first) and joins the thread after the run in progress.
struct Slot {
    name: &'static str,
    busy: Arc<AtomicBool>,
    /// Kicked while busy: the runner kicks itself again when its run ends.
    again: Arc<AtomicBool>,
    tx: Sender<RunContext>,
    join: JoinOnDrop<()>,
}

pub struct TickerSettings {
    pub config: Arc<Config>,
    pub store: Store,
    pub log: LogSink,
    pub status: Arc<Status>,
}

pub fn spawn(settings: TickerSettings, runners: Vec<Box<dyn Runner>>) -> std::io::Result<Handle> {
    let (stop, stop_rx) = bounded::<()>(0);
    let (kicks, kick_rx) = bounded::<&'static str>(4);
    let mut slots = Vec::new();
    for runner in runners {
        slots.push(spawn_runner(runner, settings.status.clone(), kicks.clone())?);
    }
    let stopping = Arc::new(AtomicBool::new(false));
    let ticker = Ticker { settings, slots, stopping: stopping.clone(), _kicks: kicks.clone() };
    let join = JoinOnDrop::spawn("ticker", move || ticker.run(stop_rx, kick_rx))?;
    Ok(Handle { stop: Some(stop), kicks, stopping, _join: join })
}

fn spawn_runner(
    mut runner: Box<dyn Runner>,
    status: Arc<Status>,
    kicks: Sender<&'static str>,
) -> std::io::Result<Slot> {
    let name = runner.name();
    let busy = Arc::new(AtomicBool::new(false));
    let again = Arc::new(AtomicBool::new(false));
    let (tx, rx) = bounded::<RunContext>(1);
    let (flag, kicked) = (busy.clone(), again.clone());
    let join = JoinOnDrop::spawn(&format!("runner-{name}"), move || {
        for ctx in rx {
            let outcome = runner.run(&ctx);
            let mut runners = status.runners.lock();
            if let Some(r) = runners.iter_mut().find(|r| r.name == name) {
                r.last_finished_at = Some(now_ms());
                r.last_result = Some(outcome.result);
                r.last_details = outcome.details;
            }
            drop(runners);
            flag.store(false, Ordering::Release);
            // A kick that came during this run may concern work the run had
            // already passed (a reply job committed after its scan).
            if kicked.swap(false, Ordering::AcqRel) {
                let _ = kicks.try_send(name);
            }
        }
    })?;
    Ok(Slot { name, busy, again, tx, join })
}

struct Ticker {
    settings: TickerSettings,
    slots: Vec<Slot>,
    stopping: Arc<AtomicBool>,
    /// Keeps the kick channel open, so waiting on it never sees it closed.
    _kicks: Sender<&'static str>,
}

impl Ticker {
    fn run(self, stop: Receiver<()>, kicks: Receiver<&'static str>) {
        let interval = Duration::from_millis(self.settings.config.timed_jobs.interval_ms);
        let mut next = Instant::now() + interval;
        self.set_next_run(interval);
        loop {
            select! {
                // Anything on `stop` means the handle was dropped (or sent).
                recv(stop) -> _ => break,
                recv(kicks) -> runner => {
                    if let Ok(runner) = runner {
                        self.start_now(runner);
                    }
                }
                default(next.saturating_duration_since(Instant::now())) => {
                    // Deadlines advance by the interval, so ticks do not drift;
                    // after a long stall the ticker skips ahead rather than bursting.
                    next += interval;
                    if next < Instant::now() {
                        next = Instant::now() + interval;
                    }
                    self.tick();
                    self.set_next_run(next.saturating_duration_since(Instant::now()));
                }
            }
        }
        for slot in self.slots {
            drop(slot.tx);
            slot.join.join();
        }
    }

    fn set_next_run(&self, after: Duration) {
        let at = now_ms() + after.as_millis() as i64;
        for r in self.settings.status.runners.lock().iter_mut() {
            r.next_run_at = Some(at);
        }
    }

    fn tick(&self) {
        if self.settings.config.role == Role::Standby {
            return;
        }
        let system = match self.settings.store.system_state() {
            Ok(state) => state.automation_state,
            Err(e) => {
                ::log::error!("ticker: cannot read system state: {e}");
                return;
            }
        };
        let batch_id = new_id("tick_");
        for slot in &self.slots {
            let ctx = self.context(slot.name, &batch_id, system);
            if slot.busy.swap(true, Ordering::AcqRel) {
                ctx.log("tick_overlap", "skipped", json!({ "reason": "previous run still in progress" }));
                continue;
            }
            self.start(slot, ctx);
        }
    }

    /// A kicked runner's run, between ticks (`Kicker`). A busy runner is
    /// not interrupted: it is marked to be kicked again once its run ends.
    fn start_now(&self, runner: &str) {
        let Some(slot) = self.slots.iter().find(|s| s.name == runner) else { return };
        if self.settings.config.role == Role::Standby || self.stopping.load(Ordering::Acquire) {
            return;
        }
        let system = match self.settings.store.system_state() {
            Ok(state) => state.automation_state,
            Err(e) => {
                ::log::error!("ticker: cannot read system state: {e}");
                return;
            }
        };
        // Marked before the busy flag is tested, so a run ending right now
        // cannot miss it (at worst one run too many, with nothing to do).
        slot.again.store(true, Ordering::Release);
        if !slot.busy.swap(true, Ordering::AcqRel) {
            slot.again.store(false, Ordering::Release);
            self.start(slot, self.context(slot.name, &new_id("tick_"), system));
        }
    }

    /// Hands a run to a runner marked busy.
    fn start(&self, slot: &Slot, ctx: RunContext) {
        if let Some(r) = self.settings.status.runners.lock().iter_mut().find(|r| r.name == slot.name) {
            r.runs += 1;
            r.last_started_at = Some(ctx.now);
        }
        if slot.tx.try_send(ctx).is_err() {
            slot.busy.store(false, Ordering::Release);
        }
    }

    fn context(&self, runner: &'static str, batch_id: &str, system: AutomationState) -> RunContext {
        let tj = &self.settings.config.timed_jobs;
        RunContext {
            batch_id: batch_id.to_string(),
            now: now_ms(),
            max_messages_per_tick: tj.max_messages_per_tick,
            max_tasks_per_tick: tj.max_tasks_per_tick,
            settle_delay_ms: tj.settle_delay_ms,
            interval_ms: tj.interval_ms,
            system,
            log: self.settings.log.clone(),
            runner,
            stopping: self.stopping.clone(),
        }
    }
}
