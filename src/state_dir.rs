//! The state directory as private storage: it holds every chat message, so
//! it is created `0700`, a looser existing one is tightened at start (with a
//! log line), and the process umask is `077`, so every file the daemon or
//! SQLite creates in it — database, WAL, SHM, logs, the ready file, backups
//! — is `0600`. Files kept from an earlier, looser run are tightened too.
//!
//! It also refuses to start over a database that was emptied: a 0-byte
//! `conductor.db` where data existed (its WAL or SHM, a backup beside it,
//! or the ready file of an earlier run) is a damaged state to report, not
//! a fresh one to initialise silently over the evidence.

use std::fs;
use std::path::{Path, PathBuf};

/// The directories the daemon uses under the state dir.
const SUBDIRS: [&str; 3] = ["artifacts", "logs", "logs/timed-jobs"];

/// Files at the top of the state dir that hold data or say where it is.
const PRIVATE_FILES: [&str; 6] = [
    "conductor.db",
    "conductor.db-wal",
    "conductor.db-shm",
    "conductor.db-journal",
    "conductor.json",
    "conductor.lock",
];

/// Sets the umask, creates the state dir and its subdirectories `0700`
/// (tightening looser ones) and tightens the data files already there.
pub fn prepare(dir: &Path) -> Result<(), String> {
    private_umask();
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(SUBDIRS.iter().map(|sub| dir.join(sub)));
    for path in &dirs {
        create_private_dir(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        tighten(path, 0o700)?;
    }
    for name in PRIVATE_FILES {
        let path = dir.join(name);
        if path.is_file() {
            tighten(&path, 0o600)?;
        }
    }
    Ok(())
}

/// `umask(077)`: nothing the daemon creates is readable by anyone else.
/// SQLite creates its WAL and SHM with the database's mode, masked by it.
fn private_umask() {
    #[cfg(unix)]
    {
        #[cfg(target_os = "linux")]
        type Mode = u32;
        #[cfg(not(target_os = "linux"))]
        type Mode = u16;
        extern "C" {
            fn umask(mask: Mode) -> Mode;
        }
        // SAFETY: umask only swaps the process's file-creation mask; it
        // cannot fail and is called at start, before the daemon's threads.
        unsafe {
            umask(0o077);
        }
    }
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Takes group and other permissions off `path`, saying so when it had any.
fn tighten(path: &Path, mode: u32) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let current = meta.permissions().mode() & 0o777;
        if current & 0o077 != 0 {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot make {} private: {e}", path.display()))?;
            log::warn!(
                "state: {} was mode {current:03o}, readable by other users; tightened to {mode:03o}",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Refuses a 0-byte `conductor.db` when something shows it held data: SQLite
/// would initialise an empty schema over it and the daemon would run on as
/// if nothing had been lost. Nothing is changed; the message says what was
/// found and what to do.
pub fn refuse_emptied_database(dir: &Path) -> Result<(), String> {
    let db = dir.join("conductor.db");
    match fs::metadata(&db) {
        Ok(meta) if meta.is_file() && meta.len() == 0 => {}
        _ => return Ok(()),
    }
    let evidence = evidence_of_data(dir);
    if evidence.is_empty() {
        return Ok(());
    }
    let found: Vec<String> = evidence.iter().map(|p| p.display().to_string()).collect();
    Err(format!(
        "{} is empty (0 bytes) but this state dir held data before ({} present); refusing to start over it \
         with a fresh database. Restore conductor.db from a backup, or move the state dir's conductor.* \
         files away to start afresh",
        db.display(),
        found.join(", ")
    ))
}

/// What in `dir` shows that a database with data was there: its WAL or SHM,
/// a sibling copy (`conductor.db.bak`, `conductor.db~`, …), a non-empty
/// `backups/`, or the ready file an earlier run leaves until a clean stop.
fn evidence_of_data(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for name in ["conductor.db-wal", "conductor.db-shm", "conductor.json"] {
        let path = dir.join(name);
        if path.exists() {
            found.push(path);
        }
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let sibling = name.starts_with("conductor.db")
                && !["conductor.db", "conductor.db-wal", "conductor.db-shm", "conductor.db-journal"]
                    .contains(&name.as_str());
            if sibling {
                found.push(entry.path());
            }
        }
    }
    let backups = dir.join("backups");
    if fs::read_dir(&backups).is_ok_and(|mut entries| entries.next().is_some()) {
        found.push(backups);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("baa-state-{tag}-{}", crate::util::random_u64()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn an_empty_database_alone_is_a_fresh_start() {
        let dir = temp("fresh");
        assert!(refuse_emptied_database(&dir).is_ok(), "no database at all");
        fs::write(dir.join("conductor.db"), b"").unwrap();
        assert!(refuse_emptied_database(&dir).is_ok(), "a new empty file");
        fs::write(dir.join("conductor.db"), b"SQLite format 3\0").unwrap();
        fs::write(dir.join("conductor.json"), b"{}").unwrap();
        assert!(refuse_emptied_database(&dir).is_ok(), "a database with content");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_emptied_database_with_evidence_is_refused() {
        for evidence in
            ["conductor.db-wal", "conductor.db-shm", "conductor.json", "conductor.db.bak", "backups/x.db"]
        {
            let dir = temp("emptied");
            fs::write(dir.join("conductor.db"), b"").unwrap();
            let path = dir.join(evidence);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, b"x").unwrap();
            let err = refuse_emptied_database(&dir).expect_err(evidence);
            let named = evidence.split('/').next().unwrap();
            assert!(err.contains(named) && err.contains("0 bytes"), "{evidence}: {err}");
            assert_eq!(fs::metadata(dir.join("conductor.db")).unwrap().len(), 0, "left as it was");
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
