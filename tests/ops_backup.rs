//! Backups and restore as docs/OPERATIONS.md describes them: the HTTP route
//! and the `backup` command copy the database while the daemon writes,
//! each copy passes `PRAGMA integrity_check` and holds every write
//! acknowledged before the backup began; the route writes only under
//! `STATE_DIR/backups/` and takes no path; and a restore (stop, replace the
//! file and drop the old WAL, start) brings back exactly the backed-up
//! state — also after a `kill -9` left a WAL behind.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;

fn message_ids(db_file: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(db_file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "{}", db_file.display());
    let mut stmt = conn.prepare("SELECT id FROM messages ORDER BY id").unwrap();
    let ids = stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<Vec<String>, _>>().unwrap();
    ids
}

fn ingest(d: &Daemon, id: &str) {
    d.post_json("/v1/messages", &message_body("claude", "c1", id, "text")).data();
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn online_backups_over_http_hold_every_acknowledged_write() {
    let d = Arc::new(Daemon::start(DaemonOpts::new()));
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (d, acked, stop) = (d.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                ingest(&d, &format!("m{n:05}"));
                n += 1;
                acked.store(n, Ordering::SeqCst);
            }
        })
    };
    assert!(wait_until(Duration::from_secs(10), || acked.load(Ordering::SeqCst) >= 20));
    let mut files = Vec::new();
    for _ in 0..3 {
        let before = acked.load(Ordering::SeqCst);
        let data = d.post_empty("/v1/system/backup").data();
        let after = acked.load(Ordering::SeqCst);
        assert_eq!(data["integrity"], "ok");
        let path = PathBuf::from(data["path"].as_str().unwrap());
        assert_eq!(path.parent().unwrap(), d.state_dir().join("backups"), "only under STATE_DIR/backups");
        assert_eq!(path.file_name().unwrap().to_str().unwrap(), data["file"]);
        assert_eq!(fs::metadata(&path).unwrap().len(), data["bytes"].as_u64().unwrap());
        let ids = message_ids(&path);
        assert!(ids.len() >= before && ids.len() <= after + 1, "{before} <= {} <= {after}", ids.len());
        // A prefix of what was written: no gap, nothing half-done.
        assert!(ids.iter().enumerate().all(|(i, id)| *id == format!("m{i:05}")), "{ids:?}");
        assert_eq!(mode(&path), 0o600);
        files.push(path);
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert_eq!(mode(&d.state_dir().join("backups")), 0o700);
    files.dedup();
    assert_eq!(files.len(), 3, "every backup has its own file");
    let left: Vec<_> = fs::read_dir(d.state_dir().join("backups")).unwrap().flatten().collect();
    assert_eq!(left.len(), 3, "no partial file left: {left:?}");
}

#[test]
fn the_http_backup_takes_no_path_from_the_request() {
    let d = Daemon::start(DaemonOpts::new());
    let outside = d.temp_dir().join("outside.db");
    for body in
        [json!({"path": outside.to_string_lossy()}), json!({"file": "../../x.db"}), json!({"name": "x"})]
    {
        let r = d.post_json("/v1/system/backup", &body);
        let field = body.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(r.error(400, "invalid_request")["details"]["field"], field.as_str());
    }
    assert!(!outside.exists());
    assert!(
        !d.state_dir().join("backups").exists()
            || fs::read_dir(d.state_dir().join("backups")).unwrap().count() == 0
    );
}

fn backup_cli(state: &Path, dest: &Path) -> std::process::Output {
    let (state, dest) = (state.to_string_lossy().into_owned(), dest.to_string_lossy().into_owned());
    run_to_exit(command(&["backup", &dest, "--state-dir", &state]), Duration::from_secs(30))
}

#[test]
fn the_backup_command_copies_a_running_daemons_database() {
    let d = Daemon::start(DaemonOpts::new());
    for i in 0..10 {
        ingest(&d, &format!("m{i:05}"));
    }
    let dest = d.temp_dir().join("copy.db");
    let o = backup_cli(d.state_dir(), &dest);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(0), "{out} {}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.starts_with(&format!("backup: {} (", dest.display())) && out.contains("integrity ok"),
        "{out}"
    );
    assert_eq!(message_ids(&dest).len(), 10);

    // An existing file is never overwritten.
    let o = backup_cli(d.state_dir(), &dest);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists already"), "{:?}", o);
    assert_eq!(message_ids(&dest).len(), 10);

    // A directory gets a dated file.
    let dir = d.temp_dir().join("backups-here");
    fs::create_dir_all(&dir).unwrap();
    assert_eq!(backup_cli(d.state_dir(), &dir).status.code(), Some(0));
    let made: Vec<_> = fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(made.len(), 1);
    assert!(made[0].file_name().unwrap().to_str().unwrap().starts_with("conductor-"));

    // No database: exit 1, one line.
    let empty = TempDir::new("no-db");
    let o = backup_cli(empty.path(), &empty.join("x.db"));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
}

/// OPERATIONS.md's restore, step by step: stop the daemon, copy the backup
/// over `conductor.db`, delete `conductor.db-wal` and `conductor.db-shm`,
/// start it.
fn restore(d: &mut Daemon, backup: &Path) {
    let state = d.state_dir().to_path_buf();
    fs::copy(backup, state.join("conductor.db")).unwrap();
    for stale in ["conductor.db-wal", "conductor.db-shm"] {
        let _ = fs::remove_file(state.join(stale));
    }
    d.restart();
}

#[test]
fn a_restore_brings_back_exactly_the_backup() {
    let mut d = Daemon::start(DaemonOpts::new());
    for i in 0..5 {
        ingest(&d, &format!("m{i:05}"));
    }
    d.post_json("/v1/system/pause", &json!({"reason": "before the backup"})).data();
    let backup = PathBuf::from(d.post_empty("/v1/system/backup").data()["path"].as_str().unwrap());
    // Changes after the backup, then a crash that leaves them in the WAL.
    for i in 5..9 {
        ingest(&d, &format!("m{i:05}"));
    }
    d.post_empty("/v1/system/resume").data();
    d.kill9();
    assert!(d.state_dir().join("conductor.db-wal").exists(), "the crash left a WAL");
    restore(&mut d, &backup);
    let listed = d.get("/v1/messages?limit=500").data();
    let ids: Vec<&str> =
        listed["messages"].as_array().unwrap().iter().map(|m| m["message_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["m00004", "m00003", "m00002", "m00001", "m00000"]);
    let system = d.get("/v1/system").data();
    assert_eq!(
        (system["automation_state"].as_str(), system["automation_reason"].as_str()),
        (Some("paused"), Some("before the backup"))
    );
    // The restored daemon writes on as usual, and a clean stop leaves a sound file.
    ingest(&d, "after-restore");
    d.stop();
    assert_eq!(message_ids(&d.db_path()).len(), 6);
}
