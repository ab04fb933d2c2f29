//! `baa-conductor service install|uninstall|status` on Linux, with the
//! unit directory and `systemctl` replaced through `BAA_SERVICE_DIR` and
//! `BAA_SERVICE_CTL` (a script that records its arguments): the unit it
//! writes restarts on failure, passes `systemd-analyze verify` when that
//! tool is installed, keeps the token out of the unit (in a 0600
//! environment file), and its `ExecStart` line really starts this daemon
//! with the token; status and uninstall call the manager and clean up.

#![cfg(target_os = "linux")]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

struct Setup {
    /// Removed with the setup.
    _tmp: TempDir,
    state: PathBuf,
    units: PathBuf,
    calls: PathBuf,
    ctl: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let tmp = TempDir::new("service");
        // A space in the path: the unit must quote it.
        let state = tmp.join("my state");
        let units = tmp.join("units");
        let calls = tmp.join("ctl-calls.txt");
        let ctl = tmp.join("fake-systemctl");
        fs::write(&ctl, format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit ${{FAKE_EXIT:-0}}\n", calls.display()))
            .unwrap();
        fs::set_permissions(&ctl, fs::Permissions::from_mode(0o755)).unwrap();
        Setup { _tmp: tmp, state, units, calls, ctl }
    }

    fn service(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let state = self.state.to_string_lossy().into_owned();
        let mut all = vec!["service"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--state-dir", &state]);
        let mut cmd = command(&all);
        cmd.env("BAA_SERVICE_DIR", &self.units).env("BAA_SERVICE_CTL", &self.ctl);
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_to_exit(cmd, Duration::from_secs(20))
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(&self.calls).unwrap_or_default().lines().map(String::from).collect()
    }

    fn unit(&self) -> PathBuf {
        self.units.join("baa-conductor.service")
    }
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// The words of an `ExecStart=` value as systemd splits them (double
/// quotes with backslash escapes; `$$` and `%%` are literal `$` and `%`).
fn exec_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, line.chars().peekable());
    let mut started = false;
    while let Some(ch) = chars.next() {
        match ch {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            '\\' if quoted => word.push(chars.next().unwrap()),
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            '$' | '%' if chars.peek() == Some(&ch) => {
                chars.next();
                word.push(ch);
                started = true;
            }
            _ => {
                word.push(ch);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

#[test]
fn install_writes_a_unit_that_starts_this_daemon_with_its_token() {
    let s = Setup::new();
    let o = s.service(&["install", "--user", "--listen", "127.0.0.1:0"], &[("BAA_TOKEN", "s3cret-t0ken")]);
    assert_eq!(o.status.code(), Some(0), "{}{}", text(&o.stdout), text(&o.stderr));
    let unit = fs::read_to_string(s.unit()).unwrap();
    assert!(unit.contains("\nRestart=on-failure\n"), "{unit}");
    assert!(unit.contains("\nRestartPreventExitStatus=2\n"), "{unit}");
    assert!(unit.contains("\nWantedBy=default.target\n"), "{unit}");
    assert!(!unit.contains("s3cret"), "the token stays out of the unit");
    let env_file = s.state.join("service.env");
    assert_eq!(fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(&env_file).unwrap(), "BAA_TOKEN=\"s3cret-t0ken\"\n");
    assert!(unit.contains(&format!("\nEnvironmentFile={}\n", env_file.display())), "{unit}");
    assert_eq!(s.calls(), ["--user daemon-reload", "--user enable --now baa-conductor.service"]);

    if let Ok(out) = Command::new("systemd-analyze").arg("verify").arg(s.unit()).output() {
        let complaints = text(&out.stderr);
        assert!(out.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
    }

    // Start the daemon exactly as the unit says, with the environment file.
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let words = exec_words(exec);
    assert_eq!(fs::canonicalize(&words[0]).unwrap(), fs::canonicalize(bin()).unwrap());
    assert_eq!(words[1..5], ["serve", "--state-dir", &s.state.to_string_lossy(), "--listen"]);
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .env_remove("BAA_TOKEN")
        .env("BAA_TOKEN", "s3cret-t0ken") // what EnvironmentFile= gives it
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = s.state.join("conductor.json");
    assert!(
        wait_until(Duration::from_secs(10), || read_json(&ready).is_some()),
        "the unit's command starts the daemon"
    );
    let base = read_json(&ready).unwrap()["http_base"].as_str().unwrap().to_string();
    let addr = base.trim_start_matches("http://").parse().unwrap();
    assert_eq!(request(addr, "GET", "/v1/system", &[], None).status, 401, "the token applies");
    let auth = [("Authorization", "Bearer s3cret-t0ken")];
    assert_eq!(request(addr, "GET", "/v1/system", &auth, None).status, 200);
    signal(child.id(), "TERM");
    assert!(wait_with_deadline(&mut child, Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn status_and_uninstall_ask_the_manager_and_clean_up() {
    let s = Setup::new();
    let o = s.service(&["status", "--user"], &[("FAKE_EXIT", "3")]);
    assert_eq!(o.status.code(), Some(3), "status passes the manager's answer on");
    assert!(text(&o.stdout).contains("(not installed)"), "{}", text(&o.stdout));
    assert_eq!(s.service(&["install", "--user"], &[("BAA_TOKEN", "t")]).status.code(), Some(0));
    let o = s.service(&["status", "--user"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o.stdout).contains(&format!("service file: {} (installed)", s.unit().display())));
    let o = s.service(&["uninstall", "--user"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(!s.unit().exists() && !s.state.join("service.env").exists());
    let calls = s.calls();
    assert_eq!(
        calls[calls.len() - 2..],
        ["--user disable --now baa-conductor.service", "--user daemon-reload"]
    );
    let o = s.service(&["uninstall", "--user"], &[]);
    assert!(text(&o.stdout).starts_with("not installed"), "{}", text(&o.stdout));
}

#[test]
fn a_system_unit_runs_as_the_installer_and_a_failed_manager_is_reported() {
    let s = Setup::new();
    let o = s.service(&["install"], &[("FAKE_EXIT", "1")]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("daemon-reload` failed (exit 1)") && err.contains("service file stays"), "{err}");
    let unit = fs::read_to_string(s.unit()).unwrap();
    assert!(unit.contains("\nWantedBy=multi-user.target\n"), "{unit}");
    let me = text(&Command::new("id").arg("-un").output().unwrap().stdout).trim().to_string();
    assert!(unit.contains(&format!("\nUser={me}\n")), "{unit}");
    assert!(!unit.contains("EnvironmentFile"), "no token, no environment file: {unit}");
    assert_eq!(s.calls(), ["daemon-reload"]);
}

#[test]
fn without_a_manager_it_says_what_it_would_run() {
    let s = Setup::new();
    let mut cmd = command(&["service", "install", "--user", "--state-dir", &s.state.to_string_lossy()]);
    cmd.env("BAA_SERVICE_DIR", &s.units).env("BAA_SERVICE_CTL", "none");
    let o = run_to_exit(cmd, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(0));
    let out = text(&o.stdout);
    assert!(out.contains("would run: systemctl --user enable --now baa-conductor.service"), "{out}");
    assert!(s.unit().exists());
    let bad = run_to_exit(command(&["service", "restart"]), Duration::from_secs(10));
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("install, uninstall or status"));
}
