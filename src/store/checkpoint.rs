//! Checkpoints off the writer's path: the `store-checkpointer` thread copies
//! the WAL back into the database file while the writer goes on committing.
//!
//! SQLite's own automatic checkpoint runs inside the commit that crosses the
//! threshold: the writer copies every changed page and fsyncs the WAL (all
//! of it, ~16 MB) and the database, and every caller queued behind it waits.
//! Under ingest load that was a 9–13 ms stall about twenty times a second:
//! about a fifth of the time no commit could happen (docs/DECISIONS.md). Here
//! the writer's connection never checkpoints by itself; after each commit it
//! reads the WAL's size and how much of it is already copied (a `NOOP`
//! checkpoint, a look at shared memory) and
//! - rings this thread when the WAL is past `CHECKPOINT_FRAMES` and much of
//!   it is not yet copied: a `PASSIVE` checkpoint on its own connection runs
//!   concurrently with the writer's commits;
//! - copies the short rest itself when the background has copied nearly all
//!   of it. That is the one step a background checkpoint cannot do under
//!   steady load: SQLite starts the WAL over from its beginning only when a
//!   write transaction begins with every frame copied, and frames keep
//!   arriving while the background copies. The writer's own checkpoint of a
//!   few hundred frames is short, and its next transaction rewinds the WAL,
//!   which therefore stays near `CHECKPOINT_FRAMES` pages.
//!
//! The checkpointer's connection never runs a statement that writes rows; it
//! only moves committed pages from the WAL into the database file, which
//! SQLite lets any connection do concurrently with the one writer.

use std::path::Path;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// WAL frames (pages) after which a checkpoint starts. A checkpoint copies
/// each page changed since the last one once, however often it was
/// rewritten; every 4000 pages (a WAL of ~16 MB) the end-to-end renewal
/// benchmark ran 12–15% faster than every 1000 (SQLite's default;
/// docs/BENCHMARKS_RUNTIME.md), and 16000 was no better.
const CHECKPOINT_FRAMES: i64 = 4000;

/// Frames not yet copied below which the writer copies them itself rather
/// than waiting for the background (see the module comment).
const TAIL_FRAMES: i64 = 512;

/// A WAL this long is checkpointed by the writer however much of it is
/// still to copy: the bound on its size should the background never catch
/// up (a load it cannot keep pace with).
const HARD_FRAMES: i64 = 4 * CHECKPOINT_FRAMES;

/// Background rounds in a row before the checkpointer waits for the next
/// ring: each round copies what the writer added during the previous one,
/// so a few rounds bring the rest down to the writer's share.
const MAX_ROUNDS: usize = 4;

/// The checkpointer's inbox.
enum CheckpointMsg {
    /// The WAL is past the threshold: copy what is not yet copied.
    Run,
}

/// The writer's side: the checkpointer thread and when to use it.
pub(super) struct Checkpoints {
    tx: Option<Sender<CheckpointMsg>>,
    join: Option<crate::util::JoinOnDrop<()>>,
    /// The writer's own checkpoint is not tried again before the WAL has
    /// grown past this (a reader holding an old snapshot can keep SQLite
    /// from starting the WAL over; retrying after every commit would then
    /// fsync after every commit).
    own_after: i64,
    /// The WAL size after the previous commit; a smaller one means it was
    /// started over.
    last_log: i64,
}

/// What the writer does after a commit.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Ring the checkpointer.
    ring: bool,
    /// Checkpoint on the writer's own connection, now.
    own: bool,
}

/// The writer's decision from the WAL's length, how much of it is copied,
/// and the length before which it does not copy again itself.
fn plan(log: i64, copied: i64, own_after: i64) -> Plan {
    if log < CHECKPOINT_FRAMES {
        return Plan { ring: false, own: false };
    }
    let behind = log - copied > TAIL_FRAMES;
    // At the bound only once the background has started on this WAL: after
    // one huge transaction (recovery of many jobs) it does the copying.
    let runaway = log >= HARD_FRAMES && copied > 0;
    Plan { ring: behind, own: (!behind || runaway) && log >= own_after }
}

/// Copies what no reader still needs, without waiting for anyone.
const PASSIVE: &str = "PRAGMA wal_checkpoint(PASSIVE)";
/// Copies every frame and empties the WAL (waits for readers, busy timeout).
const TRUNCATE: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

/// Runs `PASSIVE` or `TRUNCATE`, which return (busy, frames in the WAL,
/// frames copied).
fn wal_checkpoint(conn: &Connection, sql: &str) -> rusqlite::Result<(bool, i64, i64)> {
    conn.prepare_cached(sql)?.query_row([], |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?)))
}

/// The WAL's length and how much of it is copied, in frames: a `NOOP`
/// checkpoint, which reads shared memory only (no lock, no copying).
/// Called through the C API because the writer asks after every commit and
/// SQLite prepares a `PRAGMA wal_checkpoint` statement again on each run.
fn wal_state(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    use rusqlite::ffi;
    let (mut log, mut copied) = (0, 0);
    // SAFETY: the handle is this connection's, used by the thread that owns
    // it; the schema name is a NUL-terminated constant and the two
    // out-pointers outlive the call.
    let rc = unsafe {
        ffi::sqlite3_wal_checkpoint_v2(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_CHECKPOINT_NOOP,
            &mut log,
            &mut copied,
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None));
    }
    Ok((i64::from(log), i64::from(copied)))
}

impl Checkpoints {
    /// Opens the checkpointer's connection and starts its thread.
    pub(super) fn start(path: &Path) -> Result<Checkpoints, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // The same syncs as the writer's connection had for its own
        // checkpoints: the WAL before pages are copied, the database after.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let (tx, rx) = bounded(1);
        let join =
            crate::util::JoinOnDrop::spawn("store-checkpointer", move || Checkpointer { conn }.run(rx))
                .map_err(|e| StoreError::Sqlite(format!("cannot spawn the checkpointer: {e}")))?;
        Ok(Checkpoints { tx: Some(tx), join: Some(join), own_after: 0, last_log: 0 })
    }

    /// Called by the writer after each commit, once its callers are answered.
    pub(super) fn after_commit(&mut self, conn: &Connection) {
        let (log, copied) = match wal_state(conn) {
            Ok(state) => state,
            Err(e) => {
                log::warn!("store: cannot read the WAL's state: {e}");
                return;
            }
        };
        if log < self.last_log {
            self.own_after = 0;
        }
        self.last_log = log;
        let plan = plan(log, copied, self.own_after);
        if plan.ring {
            self.ring();
        }
        if plan.own {
            match wal_checkpoint(conn, PASSIVE) {
                // Busy: the checkpointer is in a round; try after the next commit.
                Ok((true, _, _)) => {}
                Ok((false, _, _)) => self.own_after = log + TAIL_FRAMES,
                Err(e) => {
                    self.own_after = log + TAIL_FRAMES;
                    log::warn!("store: checkpoint failed: {e}");
                }
            }
        }
    }

    fn ring(&self) {
        if let Some(tx) = &self.tx {
            match tx.try_send(CheckpointMsg::Run) {
                // Full: a ring is already waiting, which covers this one.
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => log::error!("store: the checkpointer is gone"),
            }
        }
    }

    /// Stops the checkpointer and joins it, re-raising its panic. Called by
    /// the writer before it closes its own connection, so that the writer's
    /// connection is the last one and its close checkpoints the rest and
    /// removes the WAL. (Dropped without it, say while the writer
    /// unwinds, it stops and is joined all the same: `tx` goes first.)
    pub(super) fn stop(&mut self) {
        self.tx = None;
        if let Some(join) = self.join.take() {
            join.join();
        }
    }
}

/// The writer's last checkpoint before it closes: after a clean stop
/// `conductor.db` alone holds every commit. SQLite removes the WAL only when
/// the last connection closes, and a read connection still open elsewhere
/// in the process would leave all recent data in `conductor.db-wal`, where
/// a backup of the database file would miss it.
pub(super) fn copy_everything(conn: &Connection) {
    match wal_checkpoint(conn, TRUNCATE) {
        Ok((false, _, _)) => {}
        Ok((true, _, _)) => {
            log::warn!("store: the final checkpoint was blocked by a reader; the WAL keeps the rest")
        }
        Err(e) => log::warn!("store: the final checkpoint failed: {e}; the WAL keeps the rest"),
    }
}

struct Checkpointer {
    conn: Connection,
}

impl Checkpointer {
    fn run(self, rx: Receiver<CheckpointMsg>) {
        while let Ok(CheckpointMsg::Run) = rx.recv() {
            self.rounds();
        }
        log::debug!("store: checkpointer stopped");
    }

    /// Copies until the rest is the writer's share, the copying stops
    /// gaining, or `MAX_ROUNDS` rounds ran.
    fn rounds(&self) {
        let mut behind = i64::MAX;
        for _ in 0..MAX_ROUNDS {
            // Checked before each round, not only after: a ring may have
            // waited while the previous round ran, and the rest may now be
            // the writer's share.
            let rest = match wal_state(&self.conn) {
                Ok((log, copied)) => log - copied,
                Err(e) => {
                    log::error!("store: cannot read the WAL's state: {e}");
                    return;
                }
            };
            if rest <= TAIL_FRAMES || rest >= behind {
                return;
            }
            behind = rest;
            if let Err(e) = wal_checkpoint(&self.conn, PASSIVE) {
                // A full disk or an I/O error: the WAL keeps the data and
                // the next ring tries again.
                log::error!("store: background checkpoint failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_rings_while_much_is_left_and_copies_the_rest_itself() {
        let nothing = Plan { ring: false, own: false };
        // A short WAL is left alone, however little of it is copied.
        assert_eq!(plan(CHECKPOINT_FRAMES - 1, 0, 0), nothing);
        // Past the threshold with much to copy: the background does it.
        assert_eq!(plan(CHECKPOINT_FRAMES, 0, 0), Plan { ring: true, own: false });
        assert_eq!(plan(CHECKPOINT_FRAMES + 2000, CHECKPOINT_FRAMES, 0), Plan { ring: true, own: false });
        // Only the tail left: the writer copies it, so the WAL can start over.
        let log = CHECKPOINT_FRAMES + 900;
        assert_eq!(plan(log, log - TAIL_FRAMES, 0), Plan { ring: false, own: true });
        assert_eq!(plan(log, log, 0), Plan { ring: false, own: true });
        // ... but not again before the WAL has grown (a reader kept it from
        // starting over).
        assert_eq!(plan(log, log - 10, log + 1), nothing);
        // At the hard bound the writer copies whatever is left, once the
        // background has started on it (one huge commit is left to it).
        assert_eq!(plan(HARD_FRAMES, 1, 0), Plan { ring: true, own: true });
        assert_eq!(plan(HARD_FRAMES, 0, 0), Plan { ring: true, own: false });
        assert_eq!(plan(HARD_FRAMES, 1, HARD_FRAMES + 1), Plan { ring: true, own: false });
    }
}
