//! The command line (docs/CONFIG.md): version/help, check-config, configuration
//! errors with exit 2, the ready file, the single-instance lock, and a clean
//! stop on SIGTERM/SIGINT.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use support::{command, read_json, run_to_exit, Daemon, DaemonOpts, TempDir};

const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

fn run(args: &[&str]) -> Output {
    run_to_exit(command(args), EXIT_TIMEOUT)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 2 with exactly one stderr line that names `key`.
fn assert_config_error(o: &Output, key: &str) -> String {
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {}", stderr(o));
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one stderr line: {err:?}");
    assert!(lines[0].contains(key), "{:?} names {key}", lines[0]);
    assert!(stdout(o).is_empty(), "nothing on stdout: {}", stdout(o));
    lines[0].to_string()
}

fn state_arg(dir: &Path) -> String {
    dir.display().to_string()
}

#[test]
fn version_and_help_exit_0() {
    for flag in ["--version", "-V"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0));
        let schema = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/sql")).unwrap().count();
        assert_eq!(
            stdout(&o),
            format!("baa-conductor {} (database schema {schema})\n", env!("CARGO_PKG_VERSION"))
        );
        assert!(o.stderr.is_empty());
    }
    for flag in ["--help", "-h"] {
        let o = run(&[flag]);
        assert_eq!(o.status.code(), Some(0));
        let text = stdout(&o);
        for word in ["Usage", "check-config", "--state-dir", "--listen", "--ws-listen", "--token", "--config"]
        {
            assert!(text.contains(word), "help mentions {word}");
        }
        assert!(o.stderr.is_empty());
    }
}

#[test]
fn check_config_prints_the_effective_config() {
    let tmp = TempDir::new("cli");
    let state = tmp.join("state");
    let o = run(&["check-config", "--state-dir", &state_arg(&state)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let config: Value = serde_json::from_str(&stdout(&o)).expect("check-config prints JSON");
    assert_eq!(config["listen"], "127.0.0.1:4317");
    assert_eq!(config["ws_listen"], "127.0.0.1:4318");
    assert_eq!(config["node_id"], "local");
    assert_eq!(config["renewal"]["max_attempts"], 3);
    assert_eq!(config["limits"]["max_body_bytes"], 1_048_576);
    assert_eq!(config["token"], Value::Null);
    assert_eq!(config["state_dir"], state_arg(&state));

    // The config file in the state dir is read; flags beat it; the token is hidden.
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("config.json"),
        json!({"node_id": "n1", "renewal": {"max_attempts": 5}, "listen": "127.0.0.1:9999"}).to_string(),
    )
    .unwrap();
    let o = run(&[
        "check-config",
        "--state-dir",
        &state_arg(&state),
        "--listen",
        "127.0.0.1:0",
        "--token",
        "hide-me",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let config: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(config["node_id"], "n1");
    assert_eq!(config["renewal"]["max_attempts"], 5);
    assert_eq!(config["listen"], "127.0.0.1:0");
    assert!(!out.contains("hide-me"), "the token is never printed");
    assert!(config["token"].is_string());
    // check-config does not start anything.
    assert!(!state.join("conductor.json").exists());
    assert!(!state.join("conductor.lock").exists());
}

#[test]
fn a_bad_config_value_exits_2_naming_the_key() {
    let tmp = TempDir::new("cli");
    let state = tmp.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("config.json"), r#"{"renewal":{"max_attempts":0}}"#).unwrap();
    let s = state_arg(&state);
    let line = assert_config_error(&run(&["check-config", "--state-dir", &s]), "renewal.max_attempts");
    assert!(line.contains('0'), "shows the value: {line}");
    // serve refuses the same way, before binding or writing anything.
    let o = run(&["--state-dir", &s, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]);
    assert_config_error(&o, "renewal.max_attempts");
    assert!(!state.join("conductor.json").exists());

    // The same through --config, and a few other bad values.
    let cases = [
        (json!({"timed_jobs": {"interval_ms": 0}}), "timed_jobs.interval_ms"),
        (json!({"limits": {"max_body_bytes": 0}}), "limits.max_body_bytes"),
        (json!({"renewal": {"template": "{nope}"}}), "renewal.template"),
        (json!({"renewal": {"inter_job_jitter_ms": [10, 5]}}), "renewal.inter_job_jitter_ms"),
        (json!({"limits": {"http_threads": "4"}}), "limits.http_threads"),
    ];
    for (config, key) in cases {
        let file = tmp.join("bad.json");
        std::fs::write(&file, config.to_string()).unwrap();
        let o = run(&["check-config", "--state-dir", &s, "--config", &state_arg(&file)]);
        assert_config_error(&o, key);
    }
}

#[test]
fn unknown_keys_flags_and_commands_exit_2() {
    let tmp = TempDir::new("cli");
    let s = state_arg(&tmp.join("state"));
    let file = tmp.join("c.json");
    std::fs::write(&file, r#"{"renewal":{"max_attempt":3}}"#).unwrap();
    assert_config_error(
        &run(&["check-config", "--state-dir", &s, "--config", &state_arg(&file)]),
        "renewal.max_attempt",
    );
    std::fs::write(&file, r#"{"colour":"blue"}"#).unwrap();
    assert_config_error(&run(&["check-config", "--state-dir", &s, "--config", &state_arg(&file)]), "colour");
    std::fs::write(&file, "{not json").unwrap();
    let o = run(&["check-config", "--state-dir", &s, "--config", &state_arg(&file)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let missing = state_arg(&tmp.join("missing.json"));
    let o = run(&["check-config", "--state-dir", &s, "--config", &missing]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_config_error(&run(&["--state-dir", &s, "--bogus"]), "--bogus");
    assert_config_error(&run(&["frobnicate"]), "frobnicate");
    assert_config_error(&run(&["--state-dir", &s, "--listen"]), "--listen");
}

#[test]
fn a_non_loopback_listener_without_token_exits_2() {
    let tmp = TempDir::new("cli");
    let s = state_arg(&tmp.join("state"));
    assert_config_error(
        &run(&["--state-dir", &s, "--listen", "0.0.0.0:0", "--ws-listen", "127.0.0.1:0"]),
        "token",
    );
    assert_config_error(
        &run(&["--state-dir", &s, "--listen", "127.0.0.1:0", "--ws-listen", "0.0.0.0:0"]),
        "token",
    );
    assert_config_error(&run(&["check-config", "--state-dir", &s, "--listen", "0.0.0.0:4317"]), "token");
    // With a token it is accepted (checked only; nothing is bound here).
    let o = run(&["check-config", "--state-dir", &s, "--listen", "0.0.0.0:4317", "--token", "abcdef"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn ready_file_names_the_running_daemon() {
    let d = Daemon::start(DaemonOpts::new());
    let ready =
        read_json(&d.state_dir().join("conductor.json")).expect("conductor.json exists at the ready line");
    let system = d.get("/v1/system").data();
    assert_eq!(ready["pid"], d.pid());
    assert_eq!(ready["http_base"], d.base);
    assert_eq!(ready["ws_url"], system["ws_url"]);
    let ws = ready["ws_url"].as_str().unwrap();
    assert!(ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/ws/browser"), "{ws}");
    assert_eq!(ready["started_at"], system["started_at"]);
    assert_eq!(ready["version"], env!("CARGO_PKG_VERSION"));
    // The WebSocket port is bound (it accepts connections).
    let ws_addr = ws.trim_start_matches("ws://").trim_end_matches("/ws/browser");
    std::net::TcpStream::connect(ws_addr).expect("ws listener accepts");
    assert!(d.state_dir().join("conductor.db").exists());
    assert!(d.state_dir().join("conductor.lock").exists());
    assert!(d.state_dir().join("artifacts").is_dir());
}

#[test]
fn a_second_instance_on_the_same_state_dir_is_refused() {
    let mut d = Daemon::start(DaemonOpts::new());
    d.post_json("/v1/messages", &support::message_body("chatgpt", "c", "m1", "hi")).data();
    let s = state_arg(d.state_dir());
    let o = run(&["--state-dir", &s, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(1), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("conductor.lock"), "names the lock file: {}", stderr(&o));
    assert!(!stdout(&o).contains("listening"), "never ready: {}", stdout(&o));
    // The first one is untouched.
    d.assert_healthy("a refused second instance");
    assert_eq!(read_json(&d.state_dir().join("conductor.json")).unwrap()["pid"], d.pid());
    assert_eq!(d.get("/v1/messages/m1").data()["raw_text"], "hi");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_ready_file() {
    let mut d = Daemon::start(DaemonOpts::new());
    d.post_json("/v1/system/pause", &json!({"reason": "x"})).data();
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "clean stop; stderr: {}", d.stderr_text());
    assert!(!d.state_dir().join("conductor.json").exists(), "conductor.json removed");
    assert!(!d.stderr_text().contains("panicked"), "{}", d.stderr_text());
    // And it starts again on the same dir.
    d.restart();
    assert_eq!(d.get("/v1/system").data()["automation_state"], "paused");
}

#[test]
fn sigint_stops_cleanly_too() {
    let mut d = Daemon::start(DaemonOpts::new());
    let status = d.stop_with("INT");
    assert_eq!(status.code(), Some(0), "clean stop; stderr: {}", d.stderr_text());
    assert!(!d.state_dir().join("conductor.json").exists());
}

#[test]
fn token_precedence_flag_over_env_over_file() {
    // File token only.
    let d = Daemon::start(DaemonOpts::new().config(json!({"token": "tok-file"})));
    let check = |d: &Daemon, token: &str| {
        let auth = format!("Bearer {token}");
        d.request("GET", "/v1/system", &[("Authorization", &auth)], None).status
    };
    assert_eq!(check(&d, "tok-file"), 200);
    assert_eq!(d.request("GET", "/v1/system", &[], None).status, 401);
    drop(d);
    // Environment beats the file.
    let d = Daemon::start(DaemonOpts::new().config(json!({"token": "tok-file"})).env("BAA_TOKEN", "tok-env"));
    assert_eq!(check(&d, "tok-env"), 200);
    assert_eq!(check(&d, "tok-file"), 401);
    drop(d);
    // The flag beats both.
    let d = Daemon::start(
        DaemonOpts::new().config(json!({"token": "tok-file"})).env("BAA_TOKEN", "tok-env").token("tok-flag"),
    );
    assert_eq!(check(&d, "tok-flag"), 200);
    assert_eq!(check(&d, "tok-env"), 401);
    assert_eq!(check(&d, "tok-file"), 401);
}

/// The ready line goes to stdout; a stdout nobody can write to (a full
/// device, a pipe whose reader is gone) must not stop a daemon that is
/// ready: it serves, and stops cleanly with exit 0.
#[test]
fn an_unwritable_stdout_does_not_stop_the_daemon() {
    for stdout in ["/dev/full", "closed pipe"] {
        let state = TempDir::new("stdout");
        let mut cmd = command(&[
            "serve",
            "--state-dir",
            &state_arg(state.path()),
            "--listen",
            "127.0.0.1:0",
            "--ws-listen",
            "127.0.0.1:0",
        ]);
        if stdout == "/dev/full" {
            cmd.stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap());
        } else {
            // A pipe whose only reader is gone before the daemon starts.
            let (reader, writer) = std::io::pipe().expect("pipe");
            drop(reader);
            cmd.stdout(writer);
        }
        cmd.stderr(std::process::Stdio::null());
        let mut child = cmd.spawn().expect("spawn the daemon");
        drop(cmd);
        let ready = state.path().join("conductor.json");
        assert!(
            support::wait_until(Duration::from_secs(10), || read_json(&ready).is_some()),
            "{stdout}: never ready"
        );
        let base = read_json(&ready).unwrap()["http_base"].as_str().unwrap().to_string();
        let addr = base.trim_start_matches("http://").parse().unwrap();
        // Written after the ready line: the daemon is still there to serve.
        let r = support::try_request(addr, "GET", "/healthz", &[], None, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{stdout}: not serving after the ready line: {e}"));
        assert_eq!(r.status, 200, "{stdout}");
        support::signal(child.id(), "TERM");
        let status = support::wait_with_deadline(&mut child, EXIT_TIMEOUT).expect("exits after SIGTERM");
        assert_eq!(status.code(), Some(0), "{stdout}");
    }
}

/// A daemon that cannot write `conductor.json` (a full disk, here a
/// directory in the way of its temporary file) still starts and serves; a
/// stale `conductor.json` naming a dead pid is not left behind.
#[test]
fn a_ready_file_that_cannot_be_written_does_not_stop_the_start() {
    let mut d = Daemon::start(DaemonOpts::new());
    d.stop();
    let ready = d.state_dir().join("conductor.json");
    std::fs::write(&ready, r#"{"pid": 999999, "http_base": "http://127.0.0.1:1"}"#).unwrap();
    let blocker = d.state_dir().join("conductor.json.tmp");
    std::fs::create_dir_all(blocker.join("full")).unwrap();
    d.restart();
    assert_eq!(d.get("/healthz").status, 200);
    assert!(!ready.exists(), "a stale conductor.json was left behind");
    assert!(d.stderr_text().contains("serving without it"), "{}", d.stderr_text());
    assert_eq!(d.stop().code(), Some(0));
}
