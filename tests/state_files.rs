//! The state directory is private (the dir `0700`, every file `0600`, a
//! looser one tightened at start), and damaged state fails closed: an
//! emptied database is reported instead of silently re-initialised, and an
//! unreadable stored automation state keeps the system paused.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::{command, exec_sql, message_body, run_to_exit, wait_until, Daemon, DaemonOpts};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn quick() -> DaemonOpts {
    DaemonOpts::new().config(json!({ "timed_jobs": { "interval_ms": 50, "settle_delay_ms": 0 } }))
}

#[test]
fn the_state_dir_is_0700_and_every_file_in_it_0600() {
    let mut d = Daemon::start(quick());
    let state = d.state_dir().to_path_buf();
    // The harness made the dir with the test's umask (0755): tightened.
    assert!(d.stderr_text().contains("tightened to 700"), "{}", d.stderr_text());
    // A message (the WAL and SHM exist while the daemon runs) and a log line.
    d.post_json("/v1/messages", &message_body("chatgpt", "c", "m-1", "hi")).data();
    let logs = state.join("logs/timed-jobs");
    assert!(wait_until(Duration::from_secs(10), || fs::read_dir(&logs).unwrap().next().is_some()));
    for dir in [state.clone(), state.join("artifacts"), state.join("logs"), logs.clone()] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut files: Vec<_> =
        ["conductor.db", "conductor.db-wal", "conductor.db-shm", "conductor.json", "conductor.lock"]
            .iter()
            .map(|f| state.join(f))
            .collect();
    files.extend(fs::read_dir(&logs).unwrap().map(|e| e.unwrap().path()));
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }

    // Loosened while stopped: tightened again at the next start, saying so.
    d.stop();
    set_mode(&state, 0o755);
    set_mode(&state.join("conductor.db"), 0o644);
    set_mode(&state.join("artifacts"), 0o777);
    d.restart();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("conductor.db")), 0o600);
    assert_eq!(mode(&state.join("artifacts")), 0o700);
    let log = d.stderr_text();
    assert!(log.contains("conductor.db was mode 644"), "{log}");
    assert!(log.contains("artifacts was mode 777"), "{log}");
}

/// Runs the daemon on `state` and expects it to refuse to start.
fn refused_start(state: &Path) -> String {
    let state = state.to_string_lossy().into_owned();
    let cmd = command(&["--state-dir", &state, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]);
    let out = run_to_exit(cmd, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1; stderr:\n{stderr}");
    assert!(out.stdout.is_empty(), "no ready line: {:?}", String::from_utf8_lossy(&out.stdout));
    stderr
}

#[test]
fn an_emptied_database_is_reported_not_silently_reinitialised() {
    let mut d = Daemon::start(DaemonOpts::new());
    d.post_json("/v1/messages", &message_body("chatgpt", "c", "m-1", "hi")).data();
    d.kill9();
    let state = d.state_dir().to_path_buf();
    let db = state.join("conductor.db");
    fs::File::create(&db).unwrap(); // truncated to 0 bytes: a disk or a person did it
                                    // The WAL, SHM and the ready file of the killed run are still there.
    let stderr = refused_start(&state);
    assert!(stderr.contains("conductor.db is empty (0 bytes)"), "{stderr}");
    assert!(stderr.contains("conductor.json"), "names what shows data existed: {stderr}");
    assert_eq!(fs::metadata(&db).unwrap().len(), 0, "the file is left as it was");

    // A backup beside it is evidence on its own too.
    for name in ["conductor.db-wal", "conductor.db-shm", "conductor.json"] {
        let _ = fs::remove_file(state.join(name));
    }
    fs::write(state.join("conductor.db.bak"), b"old copy").unwrap();
    let stderr = refused_start(&state);
    assert!(stderr.contains("conductor.db.bak"), "{stderr}");

    // With nothing left to say data existed, an empty file is a fresh start.
    fs::remove_file(state.join("conductor.db.bak")).unwrap();
    d.restart();
    assert_eq!(d.get("/v1/system").data()["counts"]["messages"], 0);
}

#[test]
fn an_unreadable_stored_automation_state_keeps_the_system_paused() {
    let mut d = Daemon::start(quick());
    assert_eq!(d.post_empty("/v1/system/resume").data()["automation_state"], "running");
    d.stop();
    exec_sql(
        &d.db_path(),
        "UPDATE kv SET value_json = '{\"automation_state\":\"runn' WHERE key = 'system.automation'",
    );
    d.restart();
    let system = d.get("/v1/system").data();
    assert_eq!(system["automation_state"], "paused", "{system}");
    let reason = system["automation_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("unreadable"), "a clear reason: {system}");
    // The runners see it too: nothing is projected or delivered.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let timed = d.get("/v1/timed-jobs").data();
            timed["runners"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["name"] == "store.pruner" || r["last_result"] == "system_paused")
                && timed["runners"].as_array().unwrap().iter().all(|r| r["runs"].as_u64() > Some(0))
        }),
        "{}",
        d.get("/v1/timed-jobs").text()
    );
    assert!(d.stderr_text().contains("unreadable"), "logged: {}", d.stderr_text());
    // Resuming stores a good state again.
    assert_eq!(d.post_empty("/v1/system/resume").data()["automation_state"], "running");
    d.restart();
    assert_eq!(d.get("/v1/system").data()["automation_state"], "running");
}
