//! The README's walkthrough, run as it is written: the shell block after
//! the "run as it is" marker goes to bash with `set -euo pipefail`. Two
//! things differ from a person's run, both so that the test does not
//! build the release binaries: `cargo build --release` is left out, and
//! `./target/release/` names the binaries this test run built. Everything
//! else — the environment variables, the port-0 ready file, the token,
//! the simulator, the polls and the teardown — is the README's text, so the
//! README cannot drift from what the daemon does.

mod support;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{wait_with_deadline, TempDir};

const MARKER: &str = "<!-- This block is run as it is by tests/readme_walkthrough.rs. -->";

/// The shell block that follows the marker.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = &readme[readme.find(MARKER).expect("the README marks its walkthrough") + MARKER.len()..];
    let body = after.trim_start().strip_prefix("```sh\n").expect("a sh block right after the marker");
    body[..body.find("\n```").expect("the block ends")].to_string()
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let script = walkthrough();
    assert!(script.contains("cargo build --release\n"), "the walkthrough builds first");
    let bin_dir = Path::new(support::bin()).parent().unwrap().display().to_string();
    let script =
        script.replace("cargo build --release\n", "").replace("./target/release/", &format!("{bin_dir}/"));
    let tmp = TempDir::new("readme");
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the daemon and simulator it starts can
        // be stopped even if the script fails half-way.
        .process_group(0);
    for var in ["BAA_CONFIG", "BAA_STATE_DIR", "BAA_LISTEN", "BAA_WS_LISTEN", "BAA_TOKEN", "RUST_LOG"] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().expect("bash");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_with_deadline(&mut child, Duration::from_secs(90));
    // Whatever happened, nothing the script started outlives the test.
    support::signal(child.id(), "KILL");
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let (stdout, stderr) = (out_reader.join().unwrap(), err_reader.join().unwrap());
    let status = status.unwrap_or_else(|| panic!("timed out; stdout:\n{stdout}\nstderr:\n{stderr}"));
    assert!(status.success(), "{status}; stdout:\n{stdout}\nstderr:\n{stderr}");

    let lines: Vec<&str> = stdout.lines().collect();
    let has = |want: &str| lines.iter().any(|l| l.contains(want));
    for want in [
        r#""tab_id":17"#,
        r#"{"message_id":"#,
        "Here is the «plan» we «discussed».",
        "auto",
        r#"{"status":"done","attempt_count":1,"payload_text":"[renewal] Next step: write the tests."#,
        r#""simulated":true"#,
        "true",
        "paused",
        "running",
        r#""stage":"job_completed""#,
        "ok",
        "backup: ",
        "integrity ok",
    ] {
        assert!(has(want), "stdout has {want:?}:\n{stdout}");
    }
    // After the restore the daemon has the two messages of the backup.
    assert_eq!(lines.iter().rev().find(|l| l.parse::<u32>().is_ok()), Some(&"2"), "{stdout}");
    // The teardown removed the scratch state directory.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the teardown leaves nothing behind: {left:?}");
}
