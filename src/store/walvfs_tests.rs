//! Tests of the WAL-gathering VFS (`walvfs.rs`): what a connection through
//! it commits must be in the files, readable by ordinary connections, the
//! moment the commit returns — through checkpoints, cache spills inside a
//! transaction, rollbacks, and transactions larger than one write.

use rusqlite::{Connection, OpenFlags};

use crate::store::test_dir::TestDir;

fn setup(tag: &str) -> (TestDir, std::path::PathBuf, Connection) {
    assert!(super::register());
    let dir = TestDir::new(&format!("walvfs-{tag}"));
    let path = dir.path().join("t.db");
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
    let w = Connection::open_with_flags_and_vfs(&path, flags, super::NAME).unwrap();
    w.pragma_update(None, "journal_mode", "WAL").unwrap();
    w.pragma_update(None, "synchronous", "NORMAL").unwrap();
    w.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").unwrap();
    (dir, path, w)
}

/// An ordinary connection, as the daemon's readers (and a restart) open it.
fn plain(path: &std::path::Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap()
}

fn check(conn: &Connection, rows: i64, sum: i64) {
    let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let got: (i64, i64) = conn
        .query_row("SELECT COUNT(*), IFNULL(SUM(length(v)), 0) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(got, (rows, sum));
}

#[test]
fn commits_are_visible_to_plain_connections_at_once_across_checkpoints() {
    let (_d, path, mut w) = setup("visible");
    w.pragma_update(None, "wal_autocheckpoint", 50).unwrap();
    let reader = plain(&path);
    let (mut rows, mut sum) = (0, 0);
    for round in 0..400 {
        let tx = w.transaction().unwrap();
        for i in 0..(1 + round % 7) {
            let v = format!("{round}-{i}-{}", "x".repeat(200 + (round * 37 + i) % 900));
            sum += v.len() as i64;
            rows += 1;
            tx.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
        }
        tx.commit().unwrap();
        if round % 25 == 0 {
            check(&reader, rows, sum);
        }
    }
    check(&reader, rows, sum);
}

/// A tiny page cache makes SQLite write frames of an open transaction to
/// the WAL and read them back; a rolled-back one leaves frames it never
/// commits. Neither may leak into, or be missing from, what is committed.
#[test]
fn spills_and_rollbacks_leave_exactly_the_committed_rows() {
    let (_d, path, mut w) = setup("spill");
    w.pragma_update(None, "cache_size", 10).unwrap();
    let big =
        |tag: &str, n: usize| (0..n).map(|i| format!("{tag}-{i}-{}", "y".repeat(700))).collect::<Vec<_>>();
    let (mut rows, mut sum) = (0, 0);
    for round in 0..6 {
        let tx = w.transaction().unwrap();
        for v in big(&format!("c{round}"), 300) {
            sum += v.len() as i64;
            rows += 1;
            tx.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
        }
        tx.execute("UPDATE t SET v = v || 'z' WHERE k % 3 = 0", []).unwrap();
        let touched: i64 = tx.query_row("SELECT COUNT(*) FROM t WHERE k % 3 = 0", [], |r| r.get(0)).unwrap();
        sum += touched;
        tx.commit().unwrap();
        let tx = w.transaction().unwrap();
        for v in big(&format!("r{round}"), 300) {
            tx.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
        }
        tx.rollback().unwrap();
    }
    check(&plain(&path), rows, sum);
    check(&w, rows, sum);
}

/// The commit is in the files when it returns, with the writer still open
/// and never closed: what a kill -9 right after an acknowledgement leaves.
#[test]
fn a_returned_commit_is_in_the_files_before_the_writer_closes() {
    let (_d, path, w) = setup("killed");
    let v = "q".repeat(3000);
    // One transaction larger than one write and than the buffer's bound.
    let tx = w.unchecked_transaction().unwrap();
    for _ in 0..3000 {
        tx.execute("INSERT INTO t (v) VALUES (?1)", [&v]).unwrap();
    }
    tx.commit().unwrap();
    w.execute("INSERT INTO t (v) VALUES ('last')", []).unwrap();
    // Copy the files while the writer is still open, then open the copy.
    let copy = path.with_file_name("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::copy(path.with_file_name("t.db-wal"), copy.with_file_name("copy.db-wal")).unwrap();
    check(&plain(&copy), 3001, 3000 * 3000 + 4);
    drop(w);
}
