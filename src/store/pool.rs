//! The read pool: read-only connections that callers borrow for the length
//! of one query. The pool's size caps how many requests hit SQLite at once;
//! waiters are served first come, first served; a borrowed connection goes
//! back even if the caller panics.
//!
//! The pool opens one connection at start and the others the first time
//! every open one is busy: each costs ~165 KB of heap once it has parsed
//! the schema, and the default 16 of them were most of an idle daemon's
//! heap (9.5 MB resident against the 10 MB target; ~7 MB opened lazily).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use crossbeam_channel::{bounded, Receiver, Sender};
use rusqlite::Connection;

use super::{schema, StoreError};

pub struct ReadPool {
    state: parking_lot::Mutex<PoolState>,
    path: PathBuf,
    /// The most connections the pool opens.
    size: usize,
}

/// Free connections, how many exist (free or borrowed, or being opened),
/// and the callers waiting for one in arrival order.
struct PoolState {
    free: Vec<Connection>,
    opened: usize,
    waiters: VecDeque<Sender<Connection>>,
}

impl PoolState {
    /// Queues a caller for the next connection given back.
    fn wait_in_line(&mut self) -> Receiver<Connection> {
        let (tx, rx) = bounded(1);
        self.waiters.push_back(tx);
        rx
    }
}

/// A queued caller's connection, when one is handed to it.
fn wait_for(rx: Receiver<Connection>) -> Result<Connection, StoreError> {
    rx.recv().map_err(|_| StoreError::Closed)
}

/// Returns the borrowed connection to the pool when dropped.
struct Borrowed<'a> {
    conn: Option<Connection>,
    pool: &'a ReadPool,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.give_back(conn);
        }
    }
}

impl ReadPool {
    /// Opens the first connection now, so that a database the readers
    /// cannot open stops the start; the rest (up to `size`) on demand.
    pub(super) fn open(path: &Path, size: usize) -> Result<ReadPool, StoreError> {
        let first = schema::open_reader(path)?;
        let state = PoolState { free: vec![first], opened: 1, waiters: VecDeque::new() };
        Ok(ReadPool { state: parking_lot::Mutex::new(state), path: path.to_path_buf(), size: size.max(1) })
    }

    /// How many connections the pool has opened so far.
    #[cfg(test)]
    pub(super) fn opened(&self) -> usize {
        self.state.lock().opened
    }

    /// Runs `f` with a borrowed read connection, waiting for one if all are
    /// busy. Waiters are served strictly in arrival order: a returned
    /// connection is handed to the oldest waiter, never grabbed by a newcomer,
    /// which keeps the latency tail short when many connections share a few
    /// readers.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let conn = self.take()?;
        let guard = Borrowed { conn: Some(conn), pool: self };
        f(guard.conn.as_ref().expect("borrowed connection present"))
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let waiting = {
            let mut st = self.state.lock();
            if let Some(conn) = st.free.pop() {
                return Ok(conn);
            }
            if st.opened < self.size {
                st.opened += 1;
                None
            } else {
                Some(st.wait_in_line())
            }
        };
        match waiting {
            Some(rx) => wait_for(rx),
            // Opened outside the lock: it reads the file's header.
            None => match schema::open_reader(&self.path) {
                Ok(conn) => Ok(conn),
                Err(e) => self.after_failed_open(e),
            },
        }
    }

    /// Another connection could not be opened (out of file descriptors,
    /// say): wait for one of those already open, as the pool did when it
    /// opened them all at start; only a pool with none open fails.
    fn after_failed_open(&self, err: StoreError) -> Result<Connection, StoreError> {
        let rx = {
            let mut st = self.state.lock();
            st.opened -= 1;
            if let Some(conn) = st.free.pop() {
                return Ok(conn);
            }
            if st.opened == 0 {
                return Err(err);
            }
            st.wait_in_line()
        };
        log::warn!("store: cannot open another read connection ({err}); waiting for a busy one");
        wait_for(rx)
    }

    fn give_back(&self, conn: Connection) {
        let mut conn = conn;
        loop {
            let waiter = {
                let mut st = self.state.lock();
                match st.waiters.pop_front() {
                    Some(waiter) => waiter,
                    None => {
                        st.free.push(conn);
                        return;
                    }
                }
            };
            // Sent outside the lock; a waiter that is gone hands it on.
            match waiter.send(conn) {
                Ok(()) => return,
                Err(e) => conn = e.into_inner(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When another connection cannot be opened, a caller waits for a busy
    /// one instead of failing (connections are opened on demand, not all at start).
    #[test]
    fn a_failed_open_waits_for_a_busy_reader() {
        let (dir, _writer) = crate::store::test_dir::migrated_writer("pool-fail");
        let db = dir.path().join("test.db");
        let pool = ReadPool::open(&db, 3).unwrap();
        let (got_tx, got) = std::sync::mpsc::channel();
        let pool = &pool;
        std::thread::scope(|s| {
            pool.with(|_| {
                // New connections cannot open now.
                std::fs::rename(&db, dir.path().join("gone.db")).unwrap();
                let waiter = s.spawn(move || {
                    let _ =
                        got_tx.send(pool.with(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)));
                });
                while !waiter.is_finished() && pool.state.lock().waiters.is_empty() {
                    std::thread::yield_now();
                }
                assert!(!waiter.is_finished(), "the caller failed instead of waiting");
                Ok(())
            })
            .unwrap();
        });
        assert_eq!(got.recv().unwrap().unwrap(), 1, "served by the connection given back");
        assert_eq!(pool.opened(), 1);
    }

    /// Callers that wait are served in the order they came, whatever order
    /// their threads happen to run in once a connection is given back.
    #[test]
    fn waiters_are_served_first_come_first_served() {
        let (dir, _writer) = crate::store::test_dir::migrated_writer("pool-fifo");
        let pool = ReadPool::open(&dir.path().join("test.db"), 1).unwrap();
        let served = parking_lot::Mutex::new(Vec::new());
        let (pool, served) = (&pool, &served);
        std::thread::scope(|s| {
            pool.with(|_| {
                for (i, name) in ["first", "second", "third"].into_iter().enumerate() {
                    s.spawn(move || {
                        pool.with(|_| {
                            served.lock().push(name);
                            Ok(())
                        })
                        .unwrap()
                    });
                    // The next one comes only once this one is in line.
                    while pool.state.lock().waiters.len() <= i {
                        std::thread::yield_now();
                    }
                }
                Ok(())
            })
            .unwrap();
        });
        assert_eq!(*served.lock(), ["first", "second", "third"]);
    }

    /// The pool opens one connection at start and another only when every open
    /// one is borrowed, never more than its size; a waiter gets one back.
    #[test]
    fn the_pool_opens_readers_on_demand_up_to_its_size() {
        let (dir, _writer) = super::super::test_dir::migrated_writer("pool");
        let pool = ReadPool::open(&dir.path().join("test.db"), 3).unwrap();
        assert_eq!(pool.opened(), 1);
        for _ in 0..5 {
            pool.with(|c| Ok(c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))?))
                .unwrap();
        }
        assert_eq!(pool.opened(), 1, "one caller at a time needs one connection");
        let nested = pool.with(|_| pool.with(|_| pool.with(|_| Ok(pool.opened())))).unwrap();
        assert_eq!(nested, 3);
        // All three borrowed: a fourth caller waits for one rather than opening.
        std::thread::scope(|s| {
            pool.with(|_| {
                pool.with(|_| {
                    pool.with(|_| {
                        let waiter = s.spawn(|| pool.with(|_| Ok(pool.opened())));
                        while !waiter.is_finished() && pool.state.lock().waiters.is_empty() {
                            std::thread::yield_now();
                        }
                        assert!(!waiter.is_finished(), "the fourth caller did not wait");
                        Ok(())
                    })
                })
            })
            .unwrap();
        });
        assert_eq!(pool.opened(), 3);
    }
}
