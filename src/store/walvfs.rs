//! A thin SQLite VFS over the default one, used by the store writer's
//! connection only, that gathers the frames a transaction appends to the
//! WAL and hands them to the file in a few large writes once the commit
//! frame arrives, instead of two small writes per frame.
//!
//! Why: the writer's time under ingest is mostly WAL writes. SQLite writes
//! each frame as a 24-byte header and then the page (4,120 bytes, so every
//! frame straddles two page-cache pages); with ~6 frames per message that was
//! ~13 `pwrite` calls per message and 40% of the writer's time, of which the
//! byte copy itself was 8% (docs/BENCHMARKS.md, 2026-12-01). Gathered, the
//! writer's CPU per ingested message fell by about a fifth.
//!
//! Why it is safe: readers learn of new frames only from the WAL index
//! header, which SQLite updates after it has written the commit frame, with
//! no file call in between. The buffer is written out inside the call that
//! writes the commit frame's page, so a reader never sees a frame that is
//! not in the file, and a commit is in the OS before SQLite reports it, as
//! without the shim. Anything else that could observe the file first writes
//! the buffer: reads, syncs, truncation, size queries, unlocks, file
//! controls, a write that does not continue the buffer, closing. Frames of
//! a transaction that never commits may stay buffered and are written later
//! or dropped; SQLite ignores them either way, as it ignores a torn append.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the writer opens its connection with.
pub const NAME: &CStr = c"baa-wal";

/// A WAL frame header; a write of this size is one.
const FRAME_HEADER: usize = 24;
/// Buffered bytes after which the buffer is written even without a commit
/// (a large transaction, e.g. recovery, should not hold megabytes).
const MAX_BUFFER: usize = 4 << 20;
/// Largest single write: the unix VFS masks a write's length to 17 bits
/// (`seekAndWrite`), so longer buffers go out in pieces of this size.
const MAX_WRITE: usize = 0x1f000;

/// Our file object. SQLite allocates `szOsFile` bytes for it; the default
/// VFS's own file object follows it in the same allocation.
#[repr(C)]
struct ShimFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    /// Null except for a WAL file.
    buffer: *mut Vec<u8>,
    /// File offset of the buffer's first byte.
    start: i64,
    /// The last write was a frame header with a nonzero commit field, so
    /// the next write is the commit frame's page.
    commit_next: bool,
}

const SHIM_SIZE: usize = (std::mem::size_of::<ShimFile>() + 15) & !15;

/// The default VFS this one forwards to.
struct Root(*mut ffi::sqlite3_vfs);
// SAFETY: the pointer is to SQLite's static VFS object, never freed.
unsafe impl Send for Root {}
unsafe impl Sync for Root {}
static ROOT: OnceLock<Root> = OnceLock::new();
static REGISTERED: OnceLock<bool> = OnceLock::new();

unsafe fn shim<'a>(f: *mut ffi::sqlite3_file) -> &'a mut ShimFile {
    &mut *(f as *mut ShimFile)
}

unsafe fn real(f: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    let r = shim(f).real;
    (r, &*(*r).pMethods)
}

/// Writes the buffer out (in pieces the default VFS accepts) and empties it.
unsafe fn flush(f: *mut ffi::sqlite3_file) -> c_int {
    let (r, m) = real(f);
    let s = shim(f);
    if s.buffer.is_null() || (*s.buffer).is_empty() {
        return ffi::SQLITE_OK;
    }
    let mut rc = ffi::SQLITE_OK;
    let mut offset = s.start;
    for piece in (*s.buffer).chunks(MAX_WRITE) {
        rc = (m.xWrite.unwrap())(r, piece.as_ptr() as *const c_void, piece.len() as c_int, offset);
        if rc != ffi::SQLITE_OK {
            break;
        }
        offset += piece.len() as i64;
    }
    (*s.buffer).clear();
    s.commit_next = false;
    rc
}

unsafe extern "C" fn x_write(
    f: *mut ffi::sqlite3_file,
    data: *const c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    // Not a WAL file, or the WAL header (offset 0): in order, as is.
    if shim(f).buffer.is_null() || offset < 32 {
        let rc = flush(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let (r, m) = real(f);
        return (m.xWrite.unwrap())(r, data, amt, offset);
    }
    // A write elsewhere than right after the buffer (SQLite rewriting a
    // frame of its own transaction): what came before goes first.
    let end = shim(f).start + (*shim(f).buffer).len() as i64;
    if !(*shim(f).buffer).is_empty() && offset != end {
        let rc = flush(f);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
    }
    let s = shim(f);
    let buffer = &mut *s.buffer;
    if buffer.is_empty() {
        s.start = offset;
    }
    let bytes = std::slice::from_raw_parts(data as *const u8, amt as usize);
    buffer.extend_from_slice(bytes);
    let mut now = buffer.len() >= MAX_BUFFER;
    if bytes.len() == FRAME_HEADER {
        s.commit_next = bytes[4..8] != [0, 0, 0, 0];
    } else if s.commit_next || bytes.len() < 512 {
        // The commit frame's page, or a write of a shape we do not know:
        // nothing may stay behind it.
        now = true;
    }
    if now {
        flush(f)
    } else {
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_close(f: *mut ffi::sqlite3_file) -> c_int {
    let flushed = flush(f);
    let buffer = std::mem::replace(&mut shim(f).buffer, ptr::null_mut());
    if !buffer.is_null() {
        drop(Box::from_raw(buffer));
    }
    let (r, m) = real(f);
    let closed = (m.xClose.unwrap())(r);
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// A method that forwards to the default VFS's file, writing the buffer
/// out first when `$flush` (the call could observe or change the file).
macro_rules! forward {
    ($name:ident, $field:ident, $flush:expr, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $ret {
            if $flush {
                let rc = flush(f);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
            }
            let (r, m) = real(f);
            (m.$field.unwrap())(r, $($arg),*)
        }
    };
}
forward!(x_read, xRead, true, (buf: *mut c_void, amt: c_int, offset: i64) -> c_int);
forward!(x_truncate, xTruncate, true, (size: i64) -> c_int);
forward!(x_sync, xSync, true, (flags: c_int) -> c_int);
forward!(x_file_size, xFileSize, true, (size: *mut i64) -> c_int);
forward!(x_lock, xLock, false, (level: c_int) -> c_int);
forward!(x_unlock, xUnlock, true, (level: c_int) -> c_int);
forward!(x_check_reserved_lock, xCheckReservedLock, false, (out: *mut c_int) -> c_int);
forward!(x_file_control, xFileControl, true, (op: c_int, arg: *mut c_void) -> c_int);
forward!(x_sector_size, xSectorSize, false, () -> c_int);
forward!(x_device_characteristics, xDeviceCharacteristics, false, () -> c_int);
forward!(x_shm_map, xShmMap, false, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
forward!(x_shm_lock, xShmLock, false, (offset: c_int, n: c_int, flags: c_int) -> c_int);
forward!(x_shm_unmap, xShmUnmap, false, (delete: c_int) -> c_int);
forward!(x_fetch, xFetch, true, (offset: i64, amt: c_int, out: *mut *mut c_void) -> c_int);
forward!(x_unfetch, xUnfetch, false, (offset: i64, p: *mut c_void) -> c_int);

unsafe extern "C" fn x_shm_barrier(f: *mut ffi::sqlite3_file) {
    let (r, m) = real(f);
    (m.xShmBarrier.unwrap())(r)
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    f: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let root = ROOT.get().expect("registered").0;
    let real = (f as *mut u8).add(SHIM_SIZE) as *mut ffi::sqlite3_file;
    // SQLite hands us uninitialised memory; a null `pMethods` tells it
    // there is nothing to close if the open fails.
    ptr::write(
        f as *mut ShimFile,
        ShimFile {
            base: ffi::sqlite3_file { pMethods: ptr::null() },
            real,
            buffer: ptr::null_mut(),
            start: 0,
            commit_next: false,
        },
    );
    let rc = ((*root).xOpen.unwrap())(root, name, real, flags, out_flags);
    if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
        return rc;
    }
    if flags & ffi::SQLITE_OPEN_WAL != 0 {
        shim(f).buffer = Box::into_raw(Box::new(Vec::new()));
    }
    shim(f).base.pMethods = &METHODS;
    rc
}

/// A VFS method forwarded to the default VFS.
macro_rules! delegate {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        unsafe extern "C" fn $name(_vfs: *mut ffi::sqlite3_vfs, $($arg: $ty),*) -> $ret {
            let root = ROOT.get().expect("registered").0;
            ((*root).$field.unwrap())(root, $($arg),*)
        }
    };
}
delegate!(v_delete, xDelete, (name: *const c_char, sync: c_int) -> c_int);
delegate!(v_access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int);
delegate!(v_full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int);
delegate!(v_randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int);
delegate!(v_sleep, xSleep, (micros: c_int) -> c_int);
delegate!(v_current_time, xCurrentTime, (out: *mut f64) -> c_int);
delegate!(v_get_last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int);
delegate!(v_current_time_int64, xCurrentTimeInt64, (out: *mut i64) -> c_int);

/// Registers the VFS under `NAME` (once per process). False if SQLite has
/// no default VFS to build on; the caller then opens without it.
pub fn register() -> bool {
    *REGISTERED.get_or_init(|| unsafe {
        let root = ffi::sqlite3_vfs_find(ptr::null());
        if root.is_null() || (*root).iVersion < 2 {
            return false;
        }
        let _ = ROOT.set(Root(root));
        // Leaked on purpose: SQLite keeps the pointer for the process's life.
        let vfs = Box::into_raw(Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: SHIM_SIZE as c_int + (*root).szOsFile,
            mxPathname: (*root).mxPathname,
            pNext: ptr::null_mut(),
            zName: NAME.as_ptr(),
            pAppData: ptr::null_mut(),
            xOpen: Some(x_open),
            xDelete: Some(v_delete),
            xAccess: Some(v_access),
            xFullPathname: Some(v_full_pathname),
            xDlOpen: None,
            xDlError: None,
            xDlSym: None,
            xDlClose: None,
            xRandomness: Some(v_randomness),
            xSleep: Some(v_sleep),
            xCurrentTime: Some(v_current_time),
            xGetLastError: Some(v_get_last_error),
            xCurrentTimeInt64: Some(v_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        }));
        ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK
    })
}

#[cfg(test)]
mod tests {
    // Tests of the WAL-gathering VFS (`walvfs.rs`): what a connection through
    // it commits must be in the files, readable by ordinary connections, the
    // moment the commit returns — through checkpoints, cache spills inside a
    // transaction, rollbacks, and transactions larger than one write.

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
            .query_row("SELECT COUNT(*), IFNULL(SUM(length(v)), 0) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
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
        let big = |tag: &str, n: usize| {
            (0..n).map(|i| format!("{tag}-{i}-{}", "y".repeat(700))).collect::<Vec<_>>()
        };
        let (mut rows, mut sum) = (0, 0);
        for round in 0..6 {
            let tx = w.transaction().unwrap();
            for v in big(&format!("c{round}"), 300) {
                sum += v.len() as i64;
                rows += 1;
                tx.execute("INSERT INTO t (v) VALUES (?1)", [v]).unwrap();
            }
            tx.execute("UPDATE t SET v = v || 'z' WHERE k % 3 = 0", []).unwrap();
            let touched: i64 =
                tx.query_row("SELECT COUNT(*) FROM t WHERE k % 3 = 0", [], |r| r.get(0)).unwrap();
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
}
