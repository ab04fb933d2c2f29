//! Upgrades and restarts as docs/OPERATIONS.md describes them: a database
//! made by an older schema is migrated at start with its rows kept; one made
//! by a newer build is refused with one line and exit code 1 and left
//! byte for byte as it was; `--version` names the schema; and a restart
//! while automation is paused says so in the start-up line.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::*;

/// The migrations in `sql/`, in order.
fn migrations() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
    let mut files: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|p| fs::read_to_string(p).unwrap()).collect()
}

fn serve(state: &Path) -> std::process::Command {
    let state = state.to_string_lossy().into_owned();
    command(&["--state-dir", &state, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"])
}

#[test]
fn version_names_the_schema_this_build_knows() {
    let o = run_to_exit(command(&["--version"]), Duration::from_secs(10));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        text,
        format!("baa-conductor {} (database schema {})\n", env!("CARGO_PKG_VERSION"), migrations().len())
    );
}

#[test]
fn a_database_from_a_newer_build_is_refused_and_left_unchanged() {
    // A database this build made, then "upgraded" by a future one.
    let mut d = Daemon::start(DaemonOpts::new());
    d.post_json("/v1/messages", &message_body("chatgpt", "c1", "m1", "kept")).data();
    d.stop();
    let state = d.state_dir().to_path_buf();
    let newer = migrations().len() as i64 + 3;
    db(&state.join("conductor.db")).pragma_update(None, "user_version", newer).unwrap();
    let before = fs::read(state.join("conductor.db")).unwrap();
    let files_before = names(&state);

    let o = run_to_exit(serve(&state), Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty(), "no ready line: {:?}", String::from_utf8_lossy(&o.stdout));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err:?}");
    assert!(lines[0].contains("newer baa-conductor"), "{err}");
    assert!(lines[0].contains(&format!("database schema {newer}")), "{err}");
    assert!(lines[0].contains("conductor.db"), "names the file: {err}");
    assert_eq!(fs::read(state.join("conductor.db")).unwrap(), before, "the database file is untouched");
    assert_eq!(names(&state), files_before, "no file added or removed");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_database_from_an_older_schema_is_migrated_with_its_rows() {
    let mut d = Daemon::start(DaemonOpts::new());
    d.stop();
    let path = d.db_path();
    fs::remove_file(&path).unwrap();
    {
        // Schema 3: before the message sequence (004) and later migrations.
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &migrations()[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, observed_at, created_at)
             VALUES ('old-1', 'claude', 'c-old', 'assistant', 'written by an old version', 'written', 5, 5)",
            [],
        )
        .unwrap();
    }
    d.restart();
    let m = d.get("/v1/messages/old-1").data();
    assert_eq!(m["raw_text"], "written by an old version");
    let version: i64 = db(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, migrations().len() as i64);
    // New rows go on after the old ones.
    d.post_json("/v1/messages", &message_body("claude", "c-old", "new-1", "after the upgrade")).data();
    let ids: Vec<String> = d.get("/v1/messages?conversation_id=c-old").data()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["new-1", "old-1"]);
    assert!(d.stderr_text().contains("applied migration 004"), "{}", d.stderr_text());
}

#[test]
fn the_start_up_line_says_automation_is_paused_and_why() {
    // The line follows the ready line on stdout, so it is polled for.
    let ready_line = |d: &Daemon, n: usize| {
        let mut line = String::new();
        let found = wait_until(Duration::from_secs(10), || {
            let err = d.stderr_text();
            let lines: Vec<&str> = err.lines().filter(|l| l.contains("ready: http")).collect();
            line = lines.get(n).map(|l| l.to_string()).unwrap_or_default();
            lines.len() > n
        });
        assert!(found, "start-up line {n}: {}", d.stderr_text());
        line
    };
    let mut d = Daemon::start(DaemonOpts::new());
    assert!(ready_line(&d, 0).ends_with("automation running"), "{}", d.stderr_text());
    d.post_json("/v1/system/pause", &json!({"reason": "holiday until monday"})).data();
    d.restart();
    let line = ready_line(&d, 1);
    assert!(line.contains("automation PAUSED"), "{line}");
    assert!(line.contains("\"holiday until monday\""), "{line}");
    assert!(line.contains("POST /v1/system/resume"), "{line}");
    assert!(line.contains(" UTC)"), "says since when: {line}");
}
