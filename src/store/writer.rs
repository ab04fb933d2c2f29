//! The store-writer thread: the only owner of the write connection. It blocks
//! on its inbox, takes everything that is queued (up to a bound), applies each
//! write inside its own savepoint of one transaction, commits once, and only
//! then answers the callers. One fsync-free WAL commit thus carries many
//! writes (group commit), a failed write is rolled back alone and reported to
//! its own caller, and a failed commit is reported to every caller in the
//! batch. The loop never exits on an error; it stops only on `Shutdown`.
//!
//! A write is a [`Write`]: a function of the transaction and the caller's
//! reply channel, queued by a `Store` method. Adding one is the function
//! (in `ops.rs`, `renewal.rs` or a file of its own) and the `Store` method
//! that queues it; nothing here changes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rusqlite::{Connection, TransactionBehavior};

use super::checkpoint::Checkpoints;
use super::StoreError;

/// Largest number of writes committed in one transaction. It bounds how long
/// the last caller of a burst waits for the first one's commit.
const MAX_BATCH: usize = 256;

/// The writer's inbox. Every write is a [`Write`]: the work to run inside
/// the writer's transaction and the caller's reply channel (`bounded(1)`).
pub(crate) enum StoreMsg {
    Write(Box<dyn Queued>),
    /// Where the writer gets the policy document to save, and the debounce.
    PolicySource {
        source: Option<PolicySource>,
        debounce: Duration,
    },
    /// The policy's persisted state changed; save it within the debounce.
    PolicyDirty,
    /// Commit what is queued before it, then stop.
    Shutdown,
}

/// Called with a write's result once its transaction has committed, on the
/// writer thread, before the caller is answered and before any later write.
pub type CommitHook<T> = std::sync::Arc<dyn Fn(&T) + Send + Sync>;

/// One write: a function of the writer's transaction, run again if the batch
/// it was in is replayed write by write, so it must have no effect outside
/// the connection (its result is what the caller receives).
pub(crate) struct Write<T, F> {
    apply: F,
    /// Runs after the commit, before the caller is answered ([`CommitHook`]).
    on_commit: Option<CommitHook<T>>,
    /// The result of the last `apply`, sent once the commit's fate is known.
    result: Option<Result<T, StoreError>>,
    reply: Sender<Result<T, StoreError>>,
}

impl<T, F> Write<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    pub(crate) fn new(
        apply: F,
        on_commit: Option<CommitHook<T>>,
        reply: Sender<Result<T, StoreError>>,
    ) -> Box<Self> {
        Box::new(Write { apply, on_commit, result: None, reply })
    }
}

/// What the writer needs of a [`Write`] without knowing its result type.
pub(crate) trait Queued: Send {
    /// Runs the write in the current transaction; returns its own error.
    fn apply(&mut self, conn: &Connection) -> Option<StoreError>;
    /// Answers the caller once the fate of the transaction is known: the
    /// commit's error if it failed, else the write's own result.
    fn answer(self: Box<Self>, commit: Result<(), StoreError>);
}

impl<T, F> Queued for Write<T, F>
where
    T: Send + 'static,
    F: Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn apply(&mut self, conn: &Connection) -> Option<StoreError> {
        let result = (self.apply)(conn);
        let error = result.as_ref().err().cloned();
        self.result = Some(result);
        error
    }

    fn answer(self: Box<Self>, commit: Result<(), StoreError>) {
        let value = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(value)) => value,
            (Ok(()), None) => Err(StoreError::Sqlite("write was not applied".into())),
        };
        if let (Some(hook), Ok(value)) = (&self.on_commit, &value) {
            hook(value);
        }
        // A caller that gave up waiting has dropped its receiver; that is fine.
        let _ = self.reply.send(value);
    }
}

/// A queued write to answer once its transaction's fate is known.
type Responder = Box<dyn Queued>;

pub(super) fn spawn(
    conn: Connection,
    checkpoints: Checkpoints,
    rx: Receiver<StoreMsg>,
    generation: Arc<AtomicU64>,
    policy_dirty_sent: Arc<AtomicBool>,
) -> std::io::Result<crate::util::JoinOnDrop<()>> {
    crate::util::JoinOnDrop::spawn("store-writer", move || {
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

/// Debounced persistence of the request policy's state (docs/POLICY.md): a
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
            let writes: Vec<Responder> = batch.into_iter().filter_map(|msg| self.take_write(msg)).collect();
            // A batch of policy messages alone commits nothing to look at.
            let wrote = !writes.is_empty();
            self.commit_batch(writes);
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
        // The queue is left empty at rest (the next open would index it).
        if let Err(e) = super::search::index_all_queued(&mut self.conn) {
            log::warn!("store: cannot index the last queued messages for search: {e}");
        }
        self.checkpoints.stop();
        if let Err(e) = self.conn.execute_batch("PRAGMA optimize") {
            log::debug!("store: optimize at shutdown failed: {e}");
        }
        super::checkpoint::copy_everything(&self.conn);
        log::info!("store: writer stopped");
    }

    /// Handles the policy messages (they are not writes of their own);
    /// returns the write, if `msg` is one.
    fn take_write(&mut self, msg: StoreMsg) -> Option<Responder> {
        match msg {
            StoreMsg::Write(write) => return Some(write),
            StoreMsg::PolicySource { source, debounce } => {
                self.policy.source = source;
                self.policy.debounce = debounce;
            }
            StoreMsg::PolicyDirty => {
                self.policy_dirty_sent.store(false, Ordering::SeqCst);
                if self.policy.due.is_none() {
                    self.policy.due = Some(Instant::now() + self.policy.debounce);
                }
            }
            StoreMsg::Shutdown => {}
        }
        None
    }

    fn save_policy(&mut self) {
        self.policy.due = None;
        let Some(source) = &self.policy.source else { return };
        let json = source();
        if json.is_empty() {
            return;
        }
        let saved = self
            .conn
            .prepare_cached(
                "INSERT INTO browser_request_policy_state (state_key, value_json, updated_at) VALUES ('global', ?1, ?2)
                 ON CONFLICT (state_key) DO UPDATE SET value_json = excluded.value_json, updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| stmt.execute(rusqlite::params![json, crate::util::now_ms()]));
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
    fn commit_batch(&mut self, mut batch: Vec<Responder>) {
        if batch.is_empty() {
            return;
        }
        if let Some(outcome) = self.apply_all_at_once(&mut batch) {
            self.answer(batch, outcome);
            return;
        }
        self.commit_write_by_write(batch);
    }

    /// The fast path: every write in one transaction, no savepoints. `None`
    /// (with the transaction rolled back) as soon as a write fails.
    fn apply_all_at_once(&mut self, batch: &mut [Responder]) -> Option<Result<(), StoreError>> {
        // A failure to begin is reported by the write-by-write path.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).ok()?;
        for write in batch.iter_mut() {
            if write.apply(&tx).is_some() || tx.is_autocommit() {
                // Dropping `tx` rolls back; the replay applies every write again.
                return None;
            }
        }
        Some(finish(tx))
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
            respond.answer(outcome.clone());
        }
    }

    /// The slow path: one savepoint per write, so a failed write is rolled
    /// back alone and reported to its own caller.
    fn commit_write_by_write(&mut self, batch: Vec<Responder>) {
        let mut rest = batch.into_iter().peekable();
        while rest.peek().is_some() {
            let mut tx = match self.conn.transaction_with_behavior(TransactionBehavior::Immediate) {
                Ok(tx) => tx,
                Err(e) => {
                    let err = StoreError::from(e);
                    log::error!("store: cannot begin a write transaction: {err}");
                    for write in rest {
                        write.answer(Err(err.clone()));
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
                respond.answer(Ok(()));
                for earlier in responders {
                    earlier.answer(Err(err.clone()));
                }
                // The rest of the batch gets a fresh transaction.
                continue;
            }
            let outcome = finish(tx);
            self.answer(responders, outcome);
        }
    }
}

/// Ends a transaction of writes: the messages queued for the search index
/// are indexed if a batch is due ([`super::search::index_if_due`]), then it
/// commits. An error in either leaves nothing of the transaction behind.
fn finish(tx: rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    super::search::index_if_due(&tx)?;
    tx.commit().map_err(StoreError::from)
}

/// Runs one write inside a savepoint so that its failure rolls back only its
/// own changes, never its neighbours' in the batch.
/// Returns the write and its own error, if it failed.
fn apply_in_savepoint(
    tx: &mut rusqlite::Transaction<'_>,
    mut write: Responder,
) -> (Responder, Option<StoreError>) {
    let mut sp = match tx.savepoint() {
        Ok(sp) => sp,
        Err(e) => {
            let err = StoreError::from(e);
            return (Box::new(Failed(write, err.clone())), Some(err));
        }
    };
    let error = write.apply(&sp);
    if let Some(e) = &error {
        log::warn!("store: write failed: {e}");
        // Dropping the savepoint without commit rolls it back.
        let _ = sp.rollback();
    } else if let Err(e) = sp.commit() {
        let err = StoreError::from(e);
        log::error!("store: savepoint release failed: {err}");
        return (Box::new(Failed(write, err.clone())), Some(err));
    }
    (write, error)
}

/// A write whose savepoint could not be taken or released: answered with
/// that error whatever the commit does.
struct Failed(Responder, StoreError);

impl Queued for Failed {
    fn apply(&mut self, _: &Connection) -> Option<StoreError> {
        Some(self.1.clone())
    }
    fn answer(self: Box<Self>, _: Result<(), StoreError>) {
        self.0.answer(Err(self.1))
    }
}
