//! The store: SQLite is the daemon's only durable state, and this module is
//! the only one that touches rusqlite. Writes go to one named thread, the
//! store writer, which owns the single write connection and commits whatever
//! is queued in one transaction (group commit); reads go through a small pool
//! of read-only connections ([`ReadPool`]) that callers borrow, never the
//! writer's. [`open`] starts the writer and returns its [`Handle`] and the
//! cheap-to-clone [`Store`] every role uses (e.g. [`Store::ingest`]).
//! Callers see plain Rust types ([`model`]), never SQL.

mod backup;
mod checkpoint;
mod columns;
mod exec_model;
mod exec_store;
mod executions;
mod ingest;
mod job_doc;
pub mod model;
mod ops;
mod paging;
mod pool;
mod projection;
mod read;
mod renewal;
mod schema;
mod search;
mod states;
#[cfg(test)]
pub(crate) mod test_dir;
mod walvfs;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};

pub use backup::{backup, BackupError, BackupReport};
pub use exec_model::*;
pub use model::*;
pub use pool::ReadPool;
pub use projection::{link_route, render_template, LinkRoute};
pub use read::{due_jobs_on, due_jobs_sql};
pub use schema::SCHEMA_VERSION;
pub use search::{fts_query, index_queued, search_statement, SearchHit};
use writer::StoreMsg;
pub use writer::{CommitHook, PolicySource};

/// A link as a job's `target_snapshot` (RENEWAL.md), built on the caller's
/// thread so the writer only runs SQL.
pub fn target_snapshot(link: &Link) -> String {
    job_doc::snapshot(link)
}

/// Why a store operation failed. Cloneable because one failed commit answers
/// every caller whose write was in that batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The disk (or the database's page limit) is full: SQLITE_FULL.
    Full,
    /// The database file or its directory cannot be written.
    ReadOnly,
    /// Another process holds a lock for longer than the busy timeout.
    Busy,
    /// The writer has stopped; the daemon is shutting down.
    Closed,
    /// The database file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB): an
    /// outside cause (disk, another program), not a bug of ours.
    Corrupt,
    /// The schema could not be created.
    Schema(String),
    /// The database was written by a newer build (its schema version); it
    /// is refused and left as it is.
    TooNew(i64),
    /// Any other SQLite or I/O failure, with SQLite's message.
    Sqlite(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Full => f.write_str("database or disk is full"),
            StoreError::ReadOnly => f.write_str("database is read-only"),
            StoreError::Busy => f.write_str("database is locked by another process"),
            StoreError::Corrupt => f.write_str("database disk image is malformed"),
            StoreError::Closed => f.write_str("store writer has stopped"),
            StoreError::Schema(msg) => write!(f, "schema: {msg}"),
            StoreError::TooNew(found) => write!(
                f,
                "it was written by a newer baa-conductor (database schema {found}; this build knows up to {SCHEMA_VERSION}); \
                 run that version or a newer one, or restore a backup made by this one (the file was not changed)"
            ),
            StoreError::Sqlite(msg) => write!(f, "sqlite: {msg}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Full,
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) if is_readonly(&err) => {
                StoreError::ReadOnly
            }
            Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => StoreError::Busy,
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => StoreError::Corrupt,
            _ => StoreError::Sqlite(err.to_string()),
        }
    }
}

fn is_readonly(err: &rusqlite::Error) -> bool {
    err.sqlite_error_code() == Some(rusqlite::ErrorCode::ReadOnly)
}

/// Options for opening the store; tests shrink them.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The most read-only connections the pool opens (the daemon passes
    /// 4 per `http_threads`; they are opened on demand).
    pub readers: usize,
    /// Caps the database size in pages, to simulate a full disk in tests.
    pub max_page_count: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { readers: 4, max_page_count: None }
    }
}

/// The writer thread: its inbox and its join handle. Dropping it is
/// [`Handle::shutdown`].
pub struct Handle {
    tx: Sender<StoreMsg>,
    /// Joined on drop, after the fields above.
    _join: crate::util::JoinOnDrop<()>,
}

impl Handle {
    /// Stops the writer after everything queued before this call is
    /// committed, joins it, and re-raises a panic of the writer thread.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The other senders (every `Store`) may outlive this handle, so the
        // writer is told to stop; `join` then waits for it.
        let _ = self.tx.send(StoreMsg::Shutdown);
    }
}

/// What every thread role holds to use the store: the writer's inbox and
/// the shared read pool. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: Sender<StoreMsg>,
    reads: Arc<ReadPool>,
    path: PathBuf,
    generation: Arc<AtomicU64>,
    /// A `PolicyDirty` is on its way to the writer and not yet taken.
    policy_dirty_sent: Arc<AtomicBool>,
    /// Rung after the commit of an ingest that recorded instruction blocks
    /// (`Store::on_blocks_recorded`).
    blocks_bell: Arc<std::sync::OnceLock<Bell>>,
}

/// A callback that must not block (it runs on the store writer).
pub type Bell = Arc<dyn Fn() + Send + Sync>;

/// Path of the database inside the state directory.
pub fn db_path(state_dir: &Path) -> PathBuf {
    state_dir.join("conductor.db")
}

/// Creates or opens `STATE_DIR/conductor.db`, migrates it, starts the writer
/// thread and opens the read pool. Nothing here scans a table, so start-up
/// time does not grow with the data.
pub fn open(state_dir: &Path, options: StoreOptions) -> Result<(Handle, Store), StoreError> {
    let path = db_path(state_dir);
    let mut conn = schema::open_writer(&path, options.max_page_count)?;
    schema::migrate(&mut conn)?;
    // Rows other tools wrote while the daemon was stopped.
    search::index_all_queued(&mut conn)?;
    let reads = Arc::new(ReadPool::open(&path, options.readers.max(1))?);
    let (tx, rx) = unbounded();
    let generation = Arc::new(AtomicU64::new(0));
    let policy_dirty_sent = Arc::new(AtomicBool::new(false));
    let checkpoints = checkpoint::Checkpoints::start(&path)?;
    let join = writer::spawn(conn, checkpoints, rx, generation.clone(), policy_dirty_sent.clone())
        .map_err(|e| StoreError::Sqlite(format!("cannot spawn store writer: {e}")))?;
    Ok((
        Handle { tx: tx.clone(), _join: join },
        Store { tx, reads, path, generation, policy_dirty_sent, blocks_bell: Default::default() },
    ))
}

impl Store {
    /// A counter the writer bumps after every commit, before answering the
    /// commit's callers. A read that starts after loading value `g` sees at
    /// least everything committed up to `g`, so text rendered from it may
    /// be reused while the counter still reads `g` (`http::cache`).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn reads(&self) -> &ReadPool {
        &self.reads
    }

    /// Queues a write and returns at once; the answer arrives on the
    /// returned channel after the commit (`Closed` if the writer is gone).
    /// `apply` runs inside the writer's transaction, perhaps twice (see
    /// [`writer::Write`]). Several writes queued back to back share a commit.
    fn queue<T: Send + 'static>(
        &self,
        apply: impl Fn(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
        on_commit: Option<CommitHook<T>>,
    ) -> Receiver<Result<T, StoreError>> {
        let (reply, answer) = bounded(1);
        let write = writer::Write::new(apply, on_commit, reply.clone());
        if self.tx.send(StoreMsg::Write(write)).is_err() {
            let _ = reply.send(Err(StoreError::Closed));
        }
        answer
    }

    /// Queues a write and waits until it is committed.
    fn write<T: Send + 'static>(
        &self,
        apply: impl Fn(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.queue(apply, None).recv().unwrap_or(Err(StoreError::Closed))
    }

    /// The effects of `browser.final_message`, in one transaction.
    pub fn ingest(&self, input: NewMessage, settings: IngestSettings) -> Result<IngestOutcome, StoreError> {
        self.ingest_async(input, settings).recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Queues an ingest and returns at once; the answer arrives on the
    /// returned channel after the commit. Lets one caller pipeline writes.
    pub fn ingest_async(
        &self,
        input: NewMessage,
        settings: IngestSettings,
    ) -> Receiver<Result<IngestOutcome, StoreError>> {
        let input = ingest::prepare(input, settings);
        let now = crate::util::now_ms();
        // Only a message with blocks can wake the instruction worker.
        let hook = (!input.blocks.is_empty()).then(|| {
            let bell = self.blocks_bell.clone();
            let hook: CommitHook<IngestOutcome> = Arc::new(move |outcome: &IngestOutcome| {
                if let (true, Some(ring)) = (outcome.recorded_blocks > 0, bell.get()) {
                    ring();
                }
            });
            hook
        });
        self.queue(move |c| ingest::ingest(c, &input, settings, now), hook)
    }

    /// Sets what to call, on the writer right after the commit, when an
    /// ingest recorded instruction blocks: the instruction worker's wake-up.
    /// Set once, before the bridge and HTTP start.
    pub fn on_blocks_recorded(&self, bell: Bell) {
        let _ = self.blocks_bell.set(bell);
    }

    pub fn set_system_state(
        &self,
        state: AutomationState,
        reason: Option<String>,
    ) -> Result<SystemState, StoreError> {
        let now = crate::util::now_ms();
        self.write(move |c| ops::set_system_state(c, state, reason.clone(), now))
    }

    pub fn set_conversation_status(
        &self,
        id: &str,
        status: ConversationStatus,
        reason: Option<String>,
    ) -> Result<Transition<()>, StoreError> {
        let (id, now) = (id.to_string(), crate::util::now_ms());
        self.write(move |c| ops::set_conversation_status(c, &id, status, reason.clone(), now))
    }

    pub fn retry_job(&self, job_id: &str) -> Result<Transition<()>, StoreError> {
        let (job_id, now) = (job_id.to_string(), crate::util::now_ms());
        self.write(move |c| ops::retry_job(c, &job_id, now))
    }

    pub fn cancel_job(&self, job_id: &str) -> Result<Transition<()>, StoreError> {
        let (job_id, now) = (job_id.to_string(), crate::util::now_ms());
        self.write(move |c| ops::cancel_job(c, &job_id, now))
    }

    /// Projects settled messages into jobs, with the cursor, in one
    /// transaction.
    ///
    /// `on_commit` sees the report once it is committed, on the writer,
    /// before any later write: the projector logs its jobs there, so a
    /// job's `job_projected` line always comes before the dispatcher's
    /// lines for it (the dispatcher can only claim it in a later commit).
    pub fn project(
        &self,
        settings: ProjectSettings,
        on_commit: CommitHook<ProjectionReport>,
    ) -> Result<ProjectionReport, StoreError> {
        self.queue(move |c| projection::project(c, &settings), Some(on_commit))
            .recv()
            .unwrap_or(Err(StoreError::Closed))
    }

    pub fn defer_job(
        &self,
        job_id: &str,
        next_attempt_at: i64,
        log_path: Option<String>,
    ) -> Result<(), StoreError> {
        let (job_id, now) = (job_id.to_string(), crate::util::now_ms());
        self.write(move |c| renewal::defer_job(c, &job_id, next_attempt_at, log_path.as_deref(), now))
    }

    pub fn fail_job(&self, job_id: &str, error: &str, log_path: Option<String>) -> Result<(), StoreError> {
        let (job_id, error, now) = (job_id.to_string(), error.to_string(), crate::util::now_ms());
        self.write(move |c| renewal::fail_job(c, &job_id, &error, log_path.as_deref(), now))
    }

    /// Queues a claim — the job `running`, its conversation locked, its
    /// `target_snapshot` the link the delivery will use (when given) — and
    /// returns at once; several queued back to back share one commit.
    pub fn start_attempt_async(
        &self,
        job_id: &str,
        local_conversation_id: &str,
        log_path: Option<String>,
        target_snapshot: Option<String>,
        now: i64,
    ) -> Receiver<Result<bool, StoreError>> {
        let (job_id, local_conversation_id) = (job_id.to_string(), local_conversation_id.to_string());
        self.queue(
            move |c| {
                let claim = renewal::Claim {
                    job_id: &job_id,
                    local_id: &local_conversation_id,
                    log_path: log_path.as_deref(),
                    target_snapshot: target_snapshot.as_deref(),
                    now,
                };
                renewal::start_attempt(c, &claim)
            },
            None,
        )
    }

    /// Puts a claimed job back to pending without counting an attempt.
    pub fn release_claim(
        &self,
        job: &Job,
        next_attempt_at: i64,
        log_path: Option<String>,
    ) -> Result<(), StoreError> {
        let (job_id, local_conversation_id) = (job.job_id.clone(), job.local_conversation_id.clone());
        let (last_attempt_at, now) = (job.last_attempt_at, crate::util::now_ms());
        self.write(move |c| {
            let release = renewal::Release {
                job_id: &job_id,
                local_conversation_id: &local_conversation_id,
                next_attempt_at,
                last_attempt_at,
                log_path: log_path.as_deref(),
                now,
            };
            renewal::release_claim(c, &release)
        })
    }

    pub fn finish_attempt(&self, finish: FinishAttempt) -> Result<FinishOutcome, StoreError> {
        self.finish_attempt_async(finish).recv().unwrap_or(Err(StoreError::Closed))
    }

    /// Queues `finish_attempt` and returns at once; the answer arrives after
    /// the commit. Lets the dispatcher share a commit with its next start.
    pub fn finish_attempt_async(&self, finish: FinishAttempt) -> Receiver<Result<FinishOutcome, StoreError>> {
        self.queue(move |c| renewal::finish_attempt(c, &finish), None)
    }

    pub fn recover(&self, now: i64, delay_ms: i64) -> Result<RecoveryReport, StoreError> {
        self.write(move |c| renewal::recover(c, now, delay_ms))
    }

    pub fn prune(&self, batch: PruneBatch) -> Result<PruneReport, StoreError> {
        self.write(move |c| renewal::prune(c, &batch))
    }

    /// Gives the writer the policy's document source and debounce.
    pub fn set_policy_source(&self, source: PolicySource, debounce: std::time::Duration) {
        let _ = self.tx.send(StoreMsg::PolicySource { source: Some(source), debounce });
    }

    /// Marks the policy state dirty; never blocks (called on request paths).
    ///
    /// One message stands for any number of changes: while one is on its
    /// way, further changes send nothing (the policy changes on every
    /// delivery, and each message woke the writer). The writer clears the
    /// flag when it takes the message, before it saves, and a save writes
    /// the document as it is then, so no change goes unsaved.
    pub fn mark_policy_dirty(&self) {
        if !self.policy_dirty_sent.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(StoreMsg::PolicyDirty);
        }
    }

    /// The saved policy document, if any.
    pub fn policy_state(&self) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        self.reads.with(|c| {
            Ok(c.prepare_cached(
                "SELECT value_json FROM browser_request_policy_state WHERE state_key = 'global'",
            )?
            .query_row([], |r| r.get(0))
            .optional()?)
        })
    }

    /// Returns once everything queued before it is committed.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(()))
    }
}

#[cfg(test)]
mod error_tests {
    use super::StoreError;

    /// A role that died must not let shutdown report a clean stop: a panic
    /// on the writer thread answers its caller `Closed` and is raised again
    /// by `Handle::shutdown` (the daemon then exits non-zero).
    #[test]
    fn a_panic_on_the_writer_thread_is_raised_at_shutdown() {
        let dir = super::test_dir::TestDir::new("writer-panic");
        let (handle, store) = super::open(dir.path(), super::StoreOptions::default()).unwrap();
        let answer = store.write(|_| -> Result<(), StoreError> { panic!("the writer died") });
        assert_eq!(answer, Err(StoreError::Closed));
        let shutdown = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || handle.shutdown()));
        let panic = shutdown.expect_err("shutdown reported a clean stop");
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"the writer died"));
    }

    #[test]
    fn sqlite_codes_map_to_store_errors() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert_eq!(StoreError::from(failure(rusqlite::ffi::SQLITE_CORRUPT)), StoreError::Corrupt);
        assert_eq!(StoreError::from(failure(rusqlite::ffi::SQLITE_NOTADB)), StoreError::Corrupt);
        assert_eq!(StoreError::from(failure(rusqlite::ffi::SQLITE_FULL)), StoreError::Full);
        assert_eq!(StoreError::from(failure(rusqlite::ffi::SQLITE_BUSY)), StoreError::Busy);
    }
}
