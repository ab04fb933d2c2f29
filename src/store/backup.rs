//! Online backups: a consistent copy of the database, taken while the
//! daemon goes on writing. `VACUUM INTO` runs on a connection of its own
//! (read-only, outside the read pool, whose connections are `query_only`
//! and refuse it) inside one read transaction, so the copy is the database
//! as of one commit and the writer is never blocked (WAL). The copy is
//! written under a temporary name beside its destination, checked with
//! `PRAGMA integrity_check`, made private (0600) and only then renamed into
//! place: a file with the final name is always a complete, verified copy,
//! and a failed backup leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::schema::BUSY_TIMEOUT;
use super::StoreError;

/// What a finished backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    /// The schema version of the copy (`PRAGMA user_version`).
    pub schema_version: i64,
}

/// Why a backup failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupError {
    /// There is no database at the source path.
    NoDatabase(PathBuf),
    /// The destination exists already; backups never overwrite.
    Exists(PathBuf),
    /// The copy was made but did not pass the integrity check (removed).
    Damaged(String),
    /// The destination could not be written or renamed.
    Io(String),
    /// SQLite failed (a full disk is `Store(Full)`).
    Store(StoreError),
}

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupError::NoDatabase(p) => write!(f, "there is no database at {}", p.display()),
            BackupError::Exists(p) => {
                write!(f, "{} exists already; a backup never overwrites a file", p.display())
            }
            BackupError::Damaged(why) => {
                write!(f, "the copy failed its integrity check ({why}); nothing was kept")
            }
            BackupError::Io(why) => f.write_str(why),
            BackupError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BackupError {}

impl From<rusqlite::Error> for BackupError {
    fn from(e: rusqlite::Error) -> BackupError {
        BackupError::Store(StoreError::from(e))
    }
}

/// Copies the database at `source` to the new file `dest`. The source may
/// be in use by a running daemon; it is only read.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source.to_path_buf()));
    }
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let tmp = partial_name(dest);
    let _ = fs::remove_file(&tmp);
    let result = copy_and_check(source, &tmp).and_then(|schema_version| {
        // A hard link fails if `dest` appeared meanwhile, where a rename
        // would replace it: a backup never overwrites.
        match fs::hard_link(&tmp, dest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(dest.to_path_buf()))
            }
            // A file system without hard links: rename, after one more look.
            Err(_) if !dest.exists() => fs::rename(&tmp, dest)
                .map_err(|e| BackupError::Io(format!("cannot create {}: {e}", dest.display())))?,
            Err(e) => return Err(BackupError::Io(format!("cannot create {}: {e}", dest.display()))),
        }
        let bytes = fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        Ok(BackupReport { path: dest.to_path_buf(), bytes, schema_version })
    });
    let _ = fs::remove_file(&tmp);
    result
}

/// `.NAME.partial` beside `dest`.
fn partial_name(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.partial"))
}

fn copy_and_check(source: &Path, tmp: &Path) -> Result<i64, BackupError> {
    let conn = Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let target = tmp.to_str().ok_or_else(|| BackupError::Io(format!("{} is not UTF-8", tmp.display())))?;
    conn.execute("VACUUM INTO ?1", [target])?;
    drop(conn);
    private(tmp)?;
    let copy = Connection::open_with_flags(tmp, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: Vec<String> = copy
        .prepare("PRAGMA integrity_check")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if verdict != ["ok"] {
        return Err(BackupError::Damaged(verdict.join("; ")));
    }
    Ok(copy.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

#[cfg(unix)]
fn private(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| BackupError::Io(format!("cannot make {} private: {e}", path.display())))
}

#[cfg(not(unix))]
fn private(_path: &Path) -> Result<(), BackupError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_dir::TestDir;

    fn database(dir: &TestDir, rows: usize) -> PathBuf {
        let path = dir.path().join("conductor.db");
        let mut conn = super::super::schema::open_writer(&path, None).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        for i in 0..rows {
            conn.execute(
                "INSERT INTO messages (id, platform, conversation_id, role, raw_text, observed_at, created_at)
                 VALUES (?1, 'claude', 'c', 'assistant', 'text', 1, 1)",
                [format!("m{i}")],
            )
            .unwrap();
        }
        // Left open: the copy must also see what is still in the WAL.
        std::mem::forget(conn);
        path
    }

    #[test]
    fn the_copy_has_every_committed_row_and_is_private() {
        let dir = TestDir::new("backup");
        let source = database(&dir, 50);
        let dest = dir.path().join("copy.db");
        let report = backup(&source, &dest).unwrap();
        assert_eq!(report.schema_version, super::super::SCHEMA_VERSION);
        assert!(report.bytes > 0);
        let copy = Connection::open(&dest).unwrap();
        let n: i64 = copy.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 50);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(!partial_name(&dest).exists());
    }

    #[test]
    fn an_existing_destination_or_a_missing_source_is_refused() {
        let dir = TestDir::new("backup-refuse");
        let source = database(&dir, 1);
        let dest = dir.path().join("taken.db");
        fs::write(&dest, "mine").unwrap();
        assert_eq!(backup(&source, &dest), Err(BackupError::Exists(dest.clone())));
        assert_eq!(fs::read_to_string(&dest).unwrap(), "mine");
        let missing = dir.path().join("none.db");
        assert!(matches!(backup(&missing, &dir.path().join("x.db")), Err(BackupError::NoDatabase(_))));
    }
}
