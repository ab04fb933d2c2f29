//! Exactly once, against the real daemon: a re-sent message, a restart and
//! a `kill -9` in the middle of a long `exec` never run a block twice (runs
//! are counted with a marker file the command appends to); a timeout kills
//! the command's whole process group; output over the cap is cut; the
//! `[baa]` reply is delivered once, and retried when the plugin fails it.

mod baa_support;
mod renewal_support;
mod support;

use std::path::Path;
use std::time::Duration;

use baa_support::*;
use renewal_support::WAIT;
use serde_json::json;
use support::wait_until;

/// A command that counts its runs in `marker`, then takes `secs`.
fn counted(marker: &Path, pid_file: &Path, secs: u32) -> String {
    format!("echo run >> {}; echo $$ > {}; exec sleep {secs}", marker.display(), pid_file.display())
}

/// Kills the process group a test's command left running (by its id).
fn kill_group(pid_file: &Path) {
    if let Ok(pid) = std::fs::read_to_string(pid_file) {
        let _ =
            std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", pid.trim())]).status();
    }
}

/// Whether the process `pid` has ended (gone, or a zombie not yet reaped).
fn ended(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next());
    stat.is_empty() || matches!(state, Some("Z") | Some("X"))
}

#[test]
fn a_resent_message_and_a_restart_run_nothing_again() {
    let mut b = Baa::start(json!({}));
    let sim = b.sim("succeed");
    b.conversation("c1");
    let marker = b.path("runs");
    let text = block("@conductor.exec", &format!("echo run >> {}", marker.display()));
    let first = b.say("c1", "m1", &text);
    assert_eq!(first["duplicate"], false);
    b.wait_final("m1", 1);
    b.wait_reply("m1", "done", |j| j["status"] == "done");
    // The plugin sends the same message again.
    assert_eq!(b.say("c1", "m1", &text)["duplicate"], true);
    drop(sim);
    b.d.restart();
    let sim = b.sim("succeed");
    // A later message runs after anything still queued: once it is done,
    // nothing of m1 is left to run.
    b.say("c1", "m2", &block("@conductor.status", ""));
    b.wait_final("m2", 1);
    b.wait_reply("m2", "done", |j| j["status"] == "done");
    assert_eq!(runs(&marker), 1);
    assert_eq!(b.of_message("m1").len(), 1);
    assert_eq!(b.jobs_of("m1").len(), 1, "one reply, not a second one");
    assert_eq!(sim.deliveries_for("m1").len(), 0, "the reply was not sent again");
}

#[test]
fn kill_9_during_a_long_exec_leaves_it_interrupted_and_never_rerun() {
    let mut b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    let lc = b.conversation("c1");
    let (marker, pid) = (b.path("runs"), b.path("pid"));
    let text = block("@conductor.exec", &counted(&marker, &pid, 60)) + &block("@conductor.status", "");
    b.say("c1", "m1", &text);
    let running = wait_until(WAIT, || {
        runs(&marker) == 1 && b.of_message("m1").first().is_some_and(|e| e["status"] == "running")
    });
    assert!(running, "the exec never ran: {:?}", b.of_message("m1"));
    assert_eq!(renewal_support::conversation(&b.d, &lc)["execution_state"], "instruction_running");
    b.d.kill9();
    // The command outlives a killed daemon; the test ends it.
    kill_group(&pid);
    b.d.restart();
    let sim = b.sim("succeed");
    let execs = b.wait_final("m1", 2);
    assert_eq!(outcomes(&execs), [outcome("failed", "interrupted"), ok()]);
    // Recovery released `instruction_running`. The reply's delivery may
    // hold `renewal_running` for a moment, so poll: a state never released
    // stays `instruction_running` and fails this.
    renewal_support::wait_conversation(&b.d, &lc, "idle", |c| c["execution_state"] == "idle");
    b.wait_reply("m1", "done", |j| j["status"] == "done");
    let sent = sim.wait_deliveries(1)[0]["message_text"].as_str().unwrap().to_string();
    assert!(sent.starts_with("[baa] exec: error — interrupted: the daemon stopped"), "{sent}");
    // Restart once more: still one run.
    drop(sim);
    b.d.restart();
    let _sim = b.sim("succeed");
    b.say("c1", "m2", &block("@conductor.status", ""));
    b.wait_final("m2", 1);
    assert_eq!(runs(&marker), 1, "the interrupted block ran again");
}

#[test]
fn a_clean_stop_interrupts_a_long_exec_at_once() {
    let mut b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    let (marker, pid) = (b.path("runs"), b.path("pid"));
    b.say("c1", "m1", &block("@conductor.exec", &counted(&marker, &pid, 60)));
    assert!(wait_until(WAIT, || runs(&marker) == 1 && std::fs::metadata(&pid).is_ok_and(|m| m.len() > 0)));
    let started = std::time::Instant::now();
    assert!(b.d.stop().success());
    assert!(started.elapsed() < Duration::from_secs(20), "the stop waited for the command");
    let group: i32 = std::fs::read_to_string(&pid).unwrap().trim().parse().unwrap();
    assert!(wait_until(WAIT, || ended(group)), "the command survived the stop");
    b.d.restart();
    let _sim = b.sim("succeed");
    let execs = b.wait_final("m1", 1);
    assert_eq!(outcomes(&execs), [outcome("failed", "interrupted")]);
    assert_eq!(runs(&marker), 1);
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    let gpid = b.path("grandchild");
    // A grandchild: the background subshell's own child.
    let cmd = format!("(sleep 60 & echo $! > {}; wait) & sleep 60", gpid.display());
    b.say(
        "c1",
        "m1",
        &block(&format!("@conductor.exec {}", json!({ "command": cmd, "timeout_ms": 500 })), ""),
    );
    let execs = b.wait_final("m1", 1);
    assert_eq!(outcomes(&execs), [outcome("failed", "timeout")]);
    assert!(execs[0]["result"]["exit_code"].is_null());
    let pid: i32 = std::fs::read_to_string(&gpid).unwrap().trim().parse().unwrap();
    assert!(wait_until(WAIT, || ended(pid)), "the grandchild {pid} outlived the timeout");
    let artifact = b.d.get(&format!("/artifact/exec/{}.txt", execs[0]["instruction_id"].as_str().unwrap()));
    assert!(
        artifact.text().contains("ended: timed out after 500 ms; process group killed"),
        "{}",
        artifact.text()
    );
}

#[test]
fn output_over_the_cap_is_cut_in_the_result_and_the_reply() {
    let b = Baa::start(json!({}));
    let sim = b.sim("succeed");
    b.conversation("c1");
    b.say("c1", "m1", &block("@conductor.exec", "head -c 200000 /dev/zero | tr '\\0' y"));
    let execs = b.wait_final("m1", 1);
    assert_eq!(outcomes(&execs), [ok()]);
    assert_eq!(execs[0]["result"]["stdout"].as_str().unwrap().len(), 64 * 1024);
    assert_eq!(execs[0]["result"]["truncated"], true);
    let artifact = b.d.get(execs[0]["artifact_url"].as_str().unwrap().strip_prefix(&b.d.base).unwrap());
    assert!(artifact.text().contains(&format!("--- stdout (200000 bytes) ---\n{}\n", "y".repeat(200_000))));
    let sent = sim.wait_deliveries(1)[0]["message_text"].as_str().unwrap().to_string();
    let first = sent.lines().next().unwrap();
    assert_eq!(first, format!("[baa] exec: ok — {}", "y".repeat(4096)));
}

#[test]
fn the_reply_is_retried_when_the_plugin_fails_it_and_delivered_once() {
    // Time enough between the attempts to swap the plugin.
    let b = Baa::start(json!({ "renewal": { "retry_base_delay_ms": 2000, "retry_max_delay_ms": 2000 } }));
    let mut failing = b.sim("fail:composer_busy");
    b.conversation("c1");
    b.say("c1", "m1", &block("@conductor.status", ""));
    let job = b.wait_reply("m1", "failed once", |j| j["attempt_count"] == 1);
    assert_eq!(
        (job["status"].as_str(), job["last_error"].as_str()),
        (Some("pending"), Some("composer_busy"))
    );
    failing.kill();
    let sim = b.sim("succeed");
    let job = b.wait_reply("m1", "done", |j| j["status"] == "done");
    assert_eq!(job["attempt_count"], 2);
    let frames = sim.expect_deliveries(1);
    assert!(frames[0]["message_text"].as_str().unwrap().starts_with("[baa] status: ok — "));
    assert_eq!(failing.deliveries().len(), 1);
}
