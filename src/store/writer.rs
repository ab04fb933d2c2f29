//! The store-writer thread: the only owner of the write connection. It blocks
//! on its inbox, takes everything that is queued (up to a bound), applies each
//! write inside its own savepoint of one transaction, commits once, and only
//! then answers the callers. One fsync-free WAL commit thus carries many
//! writes (group commit), a failed write is rolled back alone and reported to
//! its own caller, and a failed commit is reported to every caller in the
//! batch. The loop never exits on an error; it stops only on `Shutdown`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{Connection, TransactionBehavior};

use super::checkpoint::Checkpoints;
use super::model::*;
use super::{ingest, ops, renewal, StoreError};

/// Largest number of writes committed in one transaction. It bounds how long
/// the last caller of a burst waits for the first one's commit.
const MAX_BATCH: usize = 256;

/// The writer's inbox. Every write carries its reply channel (`bounded(1)`).
/// `Ingest` is much the largest variant; it is the most frequent one too, so
/// boxing it would add an allocation to every message for nothing.
#[allow(clippy::large_enum_variant)]
pub enum StoreMsg {
    Ingest {
        input: ingest::PreparedMessage,
        settings: IngestSettings,
        now: i64,
        reply: Sender<Result<IngestOutcome, StoreError>>,
    },
    SetSystemState {
        state: AutomationState,
        reason: Option<String>,
        now: i64,
        reply: Sender<Result<SystemState, StoreError>>,
    },
    SetConversationStatus {
        id: String,
        status: ConversationStatus,
        reason: Option<String>,
        now: i64,
        reply: Sender<Result<Transition<()>, StoreError>>,
    },
    RetryJob {
        job_id: String,
        now: i64,
        reply: Sender<Result<Transition<()>, StoreError>>,
    },
    CancelJob {
        job_id: String,
        now: i64,
        reply: Sender<Result<Transition<()>, StoreError>>,
    },
    Project {
        settings: ProjectSettings,
        /// Runs on the writer right after the commit, before any later
        /// write is applied (see `Store::project`).
        on_commit: CommitHook<ProjectionReport>,
        reply: Sender<Result<ProjectionReport, StoreError>>,
    },
    DeferJob {
        job_id: String,
        next_attempt_at: i64,
        log_path: Option<String>,
        now: i64,
        reply: Sender<Result<(), StoreError>>,
    },
    FailJob {
        job_id: String,
        error: String,
        log_path: Option<String>,
        now: i64,
        reply: Sender<Result<(), StoreError>>,
    },
    StartAttempt {
        job_id: String,
        local_conversation_id: String,
        log_path: Option<String>,
        now: i64,
        reply: Sender<Result<bool, StoreError>>,
    },
    ReleaseClaim {
        job_id: String,
        local_conversation_id: String,
        next_attempt_at: i64,
        /// Restored: no attempt took place.
        last_attempt_at: Option<i64>,
        log_path: Option<String>,
        now: i64,
        reply: Sender<Result<(), StoreError>>,
    },
    FinishAttempt {
        finish: FinishAttempt,
        reply: Sender<Result<FinishOutcome, StoreError>>,
    },
    Recover {
        now: i64,
        delay_ms: i64,
        reply: Sender<Result<RecoveryReport, StoreError>>,
    },
    Prune {
        batch: PruneBatch,
        reply: Sender<Result<PruneReport, StoreError>>,
    },
    /// Where the writer gets the policy document to save, and the debounce.
    PolicySource {
        source: Option<PolicySource>,
        debounce: Duration,
    },
    /// The policy's persisted state changed; save it within the debounce.
    PolicyDirty,
    /// A barrier: answered after everything queued before it is committed.
    Flush {
        reply: Sender<Result<(), StoreError>>,
    },
    /// Commit what is queued before it, then stop.
    Shutdown,
}

/// Called with a write's result once its transaction has committed, on the
/// writer thread, before the caller is answered and before any later write.
pub type CommitHook<T> = std::sync::Arc<dyn Fn(&T) + Send + Sync>;

/// Sends a write's result once the fate of its transaction is known.
type Responder = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

fn responder<T: Send + 'static>(
    reply: Sender<Result<T, StoreError>>,
    value: Result<T, StoreError>,
) -> Responder {
    Box::new(move |commit: Result<(), StoreError>| {
        // A caller that gave up waiting has dropped its receiver; that is fine.
        let _ = reply.send(commit.and(value));
    })
}

pub(super) fn spawn(
    conn: Connection,
    checkpoints: Checkpoints,
    rx: Receiver<StoreMsg>,
    generation: Arc<AtomicU64>,
    policy_dirty_sent: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("store-writer".into()).spawn(move || {
        Writer { conn, checkpoints, policy: PolicySaver::default(), generation, policy_dirty_sent }.run(rx)
    })
}

struct Writer {
    conn: Connection,
    /// The background checkpointer, and when the writer copies the rest.
    checkpoints: Checkpoints,
    policy: PolicySaver,
    /// Bumped after every commit, before any of its callers is answered
    /// (see `Store::generation`).
    generation: Arc<AtomicU64>,
    /// Cleared when a `PolicyDirty` is taken (see `Store::mark_policy_dirty`).
    policy_dirty_sent: Arc<AtomicBool>,
}

/// Debounced persistence of the request policy's state (POLICY.md): a
/// change only marks it dirty; the writer saves the current document at
/// most once per debounce window, off every caller's path, and once more at
/// shutdown.
#[derive(Default)]
struct PolicySaver {
    source: Option<PolicySource>,
    debounce: Duration,
    due: Option<Instant>,
}

/// Produces the policy's current state document.
pub type PolicySource = Box<dyn Fn() -> String + Send>;

impl Writer {
    fn run(mut self, rx: Receiver<StoreMsg>) {
        let mut stopping = false;
        while !stopping {
            let first = match self.policy.due {
                Some(due) => match rx.recv_deadline(due) {
                    Ok(msg) => msg,
                    Err(RecvTimeoutError::Timeout) => {
                        self.save_policy();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            if let Some(pos) = batch.iter().position(|m| matches!(m, StoreMsg::Shutdown)) {
                // Messages after Shutdown were sent by callers racing the stop;
                // dropping them drops their reply senders, so they see Closed.
                batch.truncate(pos);
                stopping = true;
            }
            batch.retain_mut(|msg| self.take_policy_msg(msg));
            // A batch of policy messages alone commits nothing to look at.
            let wrote = !batch.is_empty();
            self.commit_batch(batch);
            if wrote {
                self.checkpoints.after_commit(&self.conn);
            }
            if self.policy.due.is_some_and(|due| due <= Instant::now()) {
                self.save_policy();
            }
        }
        if self.policy.due.is_some() {
            self.save_policy();
        }
        // The policy's state is saved: its source (which holds the policy,
        // whose dirty callback holds a `Store` and so the read pool) can go.
        self.policy.source = None;
        self.checkpoints.stop();
        if let Err(e) = self.conn.execute_batch("PRAGMA optimize") {
            log::debug!("store: optimize at shutdown failed: {e}");
        }
        super::checkpoint::copy_everything(&self.conn);
        log::info!("store: writer stopped");
    }

    /// Handles the policy messages (they are not writes of their own);
    /// returns whether `msg` still needs the batch.
    fn take_policy_msg(&mut self, msg: &mut StoreMsg) -> bool {
        match msg {
            StoreMsg::PolicySource { source, debounce } => {
                self.policy.source = source.take();
                self.policy.debounce = *debounce;
                false
            }
            StoreMsg::PolicyDirty => {
                self.policy_dirty_sent.store(false, Ordering::SeqCst);
                if self.policy.due.is_none() {
                    self.policy.due = Some(Instant::now() + self.policy.debounce);
                }
                false
            }
            _ => true,
        }
    }

    fn save_policy(&mut self) {
        self.policy.due = None;
        let Some(source) = &self.policy.source else { return };
        let json = source();
        if json.is_empty() {
            return;
        }
        let saved = self.conn.execute(
            "INSERT INTO browser_request_policy_state (state_key, value_json, updated_at) VALUES ('global', ?1, ?2)
             ON CONFLICT (state_key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
            rusqlite::params![json, crate::util::now_ms()],
        );
        if let Err(e) = saved {
            // Kept dirty: the next change or shutdown tries again.
            log::error!("store: cannot save the policy state: {e}");
        }
    }

    /// Applies a batch in one transaction and answers each caller after the
    /// commit, with the commit's error if it failed.
    ///
    /// Writes almost never fail, so the batch is first applied as it is, with
    /// no savepoint per write: savepoints copy every page a write touches
    /// into a sub-journal and cost ~15% of the writer's time under ingest
    /// load (docs/BENCHMARKS.md). Only if some write fails is that
    /// transaction rolled back and the batch replayed one savepoint per write,
    /// so a failure still undoes only its own write.
    fn commit_batch(&mut self, batch: Vec<StoreMsg>) {
        if batch.is_empty() {
            return;
        }
        if let Some((responders, outcome)) = self.apply_all_at_once(&batch) {
            self.answer(responders, outcome);
            return;
        }
        self.commit_write_by_write(batch);
    }

    /// The fast path: every write in one transaction, no savepoints. `None`
    /// (with the transaction rolled back) as soon as a write fails.
    fn apply_all_at_once(&mut self, batch: &[StoreMsg]) -> Option<(Vec<Responder>, Result<(), StoreError>)> {
        // A failure to begin is reported by the write-by-write path.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ok()?;
        let mut responders = Vec::with_capacity(batch.len());
        for msg in batch {
            let applied = apply(&tx, msg);
            if applied.error.is_some() || tx.is_autocommit() {
                // Dropping `tx` rolls back; the responders answer nobody.
                return None;
            }
            responders.push(applied.send);
        }
        Some((responders, tx.commit().map_err(StoreError::from)))
    }

    /// Answers the callers of one attempted commit.
    fn answer(&self, responders: Vec<Responder>, outcome: Result<(), StoreError>) {
        if let Err(err) = &outcome {
            log::error!("store: commit of {} writes failed: {err}", responders.len());
        }
        // Before the answers: a caller who saw its write acknowledged
        // must never be served a cached read from before it.
        self.generation.fetch_add(1, Ordering::SeqCst);
        for respond in responders {
            respond(outcome.clone());
        }
    }

    /// The slow path: one savepoint per write, so a failed write is rolled
    /// back alone and reported to its own caller.
    fn commit_write_by_write(&mut self, batch: Vec<StoreMsg>) {
        let mut rest = batch.into_iter().peekable();
        while rest.peek().is_some() {
            let mut tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) => {
                    let err = StoreError::from(e);
                    log::error!("store: cannot begin a write transaction: {err}");
                    for msg in rest {
                        answer_without_commit(msg, err.clone());
                    }
                    return;
                }
            };
            let mut responders: Vec<Responder> = Vec::new();
            let mut aborted = None;
            for msg in rest.by_ref() {
                let (respond, error) = apply_in_savepoint(&mut tx, msg);
                // On some errors (SQLITE_FULL, IOERR, BUSY, NOMEM) SQLite rolls
                // the whole transaction back, not just the failed statement:
                // the writes applied before this one are gone too, and the
                // next ones must not run outside a transaction.
                if tx.is_autocommit() {
                    aborted = Some((respond, error));
                    break;
                }
                responders.push(respond);
            }
            if let Some((respond, error)) = aborted {
                drop(tx);
                let err = error.unwrap_or_else(|| StoreError::Sqlite("transaction rolled back".into()));
                log::error!(
                    "store: transaction of {} writes rolled back by SQLite: {err}",
                    responders.len() + 1
                );
                respond(Ok(()));
                for earlier in responders {
                    earlier(Err(err.clone()));
                }
                // The rest of the batch gets a fresh transaction.
                continue;
            }
            let outcome = tx.commit().map_err(StoreError::from);
            self.answer(responders, outcome);
        }
    }
}

/// Runs one write inside a savepoint so that its failure rolls back only its
/// own changes, never its neighbours' in the batch.
/// Returns the responder and the write's own error, if it failed.
fn apply_in_savepoint(tx: &mut rusqlite::Transaction<'_>, msg: StoreMsg) -> (Responder, Option<StoreError>) {
    let mut sp = match tx.savepoint() {
        Ok(sp) => sp,
        Err(e) => {
            let err = StoreError::from(e);
            let answer = err.clone();
            return (Box::new(move |_| answer_without_commit(msg, answer)), Some(err));
        }
    };
    let respond = apply(&sp, &msg);
    if let Some(e) = &respond.error {
        log::warn!("store: write failed: {e}");
        // Dropping the savepoint without commit rolls it back.
        let _ = sp.rollback();
    } else if let Err(e) = sp.commit() {
        let err = StoreError::from(e);
        log::error!("store: savepoint release failed: {err}");
        let answer = err.clone();
        return (Box::new(move |_| (respond.send)(Err(answer))), Some(err));
    }
    (respond.send, respond.error)
}

struct Applied {
    error: Option<StoreError>,
    send: Responder,
}

fn applied<T: Send + 'static>(
    reply: &Sender<Result<T, StoreError>>,
    value: Result<T, StoreError>,
) -> Applied {
    Applied { error: value.as_ref().err().cloned(), send: responder(reply.clone(), value) }
}

/// Applies one write. It borrows the message so that a batch can be
/// replayed after a rollback; the responder holds its own handle on the
/// caller's reply channel.
fn apply(conn: &Connection, msg: &StoreMsg) -> Applied {
    match msg {
        StoreMsg::Ingest { input, settings, now, reply } => {
            applied(reply, ingest::ingest(conn, input, *settings, *now))
        }
        StoreMsg::SetSystemState { state, reason, now, reply } => {
            applied(reply, ops::set_system_state(conn, *state, reason.clone(), *now))
        }
        StoreMsg::SetConversationStatus { id, status, reason, now, reply } => {
            applied(reply, ops::set_conversation_status(conn, id, *status, reason.clone(), *now))
        }
        StoreMsg::RetryJob { job_id, now, reply } => applied(reply, ops::retry_job(conn, job_id, *now)),
        StoreMsg::CancelJob { job_id, now, reply } => applied(reply, ops::cancel_job(conn, job_id, *now)),
        StoreMsg::Project { settings, on_commit, reply } => {
            let report = renewal::project(conn, settings);
            let value = report.as_ref().err().cloned();
            let (reply, hook) = (reply.clone(), on_commit.clone());
            Applied {
                error: value,
                send: Box::new(move |commit: Result<(), StoreError>| {
                    if let (Ok(()), Ok(report)) = (&commit, &report) {
                        hook(report);
                    }
                    let _ = reply.send(commit.and(report));
                }),
            }
        }
        StoreMsg::DeferJob { job_id, next_attempt_at, log_path, now, reply } => {
            applied(reply, renewal::defer_job(conn, job_id, *next_attempt_at, log_path.as_deref(), *now))
        }
        StoreMsg::FailJob { job_id, error, log_path, now, reply } => {
            applied(reply, renewal::fail_job(conn, job_id, error, log_path.as_deref(), *now))
        }
        StoreMsg::StartAttempt { job_id, local_conversation_id, log_path, now, reply } => applied(
            reply,
            renewal::start_attempt(conn, job_id, local_conversation_id, log_path.as_deref(), *now),
        ),
        StoreMsg::ReleaseClaim {
            job_id,
            local_conversation_id,
            next_attempt_at,
            last_attempt_at,
            log_path,
            now,
            reply,
        } => {
            let release = renewal::Release {
                job_id,
                local_conversation_id,
                next_attempt_at: *next_attempt_at,
                last_attempt_at: *last_attempt_at,
                log_path: log_path.as_deref(),
                now: *now,
            };
            applied(reply, renewal::release_claim(conn, &release))
        }
        StoreMsg::FinishAttempt { finish, reply } => applied(reply, renewal::finish_attempt(conn, finish)),
        StoreMsg::Recover { now, delay_ms, reply } => applied(reply, renewal::recover(conn, *now, *delay_ms)),
        StoreMsg::Prune { batch, reply } => applied(reply, renewal::prune(conn, batch)),
        StoreMsg::Flush { reply } => applied(reply, Ok(())),
        StoreMsg::Shutdown | StoreMsg::PolicySource { .. } | StoreMsg::PolicyDirty => {
            Applied { error: None, send: Box::new(|_| {}) }
        }
    }
}

/// Answers a message whose transaction never started.
fn answer_without_commit(msg: StoreMsg, err: StoreError) {
    match msg {
        StoreMsg::Ingest { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::SetSystemState { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::SetConversationStatus { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::RetryJob { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::CancelJob { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::Project { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::DeferJob { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::FailJob { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::StartAttempt { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::FinishAttempt { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::ReleaseClaim { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::Recover { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::Prune { reply, .. } => drop(reply.send(Err(err.clone()))),
        StoreMsg::Flush { reply } => drop(reply.send(Err(err.clone()))),
        StoreMsg::Shutdown | StoreMsg::PolicySource { .. } | StoreMsg::PolicyDirty => {}
    }
}
