//! What instruction blocks may not do, against the real daemon: nothing
//! runs unless `baa.enabled`, only `allowed_tools` run, no path leaves
//! `allowed_roots` (absolute, `..`, symlink), broken blocks fail alone, a
//! `manual` conversation or a paused system runs nothing (also not later),
//! and neither a block's text nor its output reaches the log.

mod baa_support;
mod renewal_support;
mod support;

use baa_support::*;
use renewal_support::{auto_conversation, ingest, message, set_status, system, Sim, WAIT};
use serde_json::json;
use support::{wait_until, TempDir};

#[test]
fn disabled_by_default_a_message_with_blocks_is_renewed_like_any_other() {
    let d = renewal_support::start(json!({}));
    let sim = Sim::connect(&d, CLIENT, &["--mode", "succeed"]);
    auto_conversation(&d, "chatgpt", "c1", Some(CLIENT), Some(TAB));
    let marker = TempDir::new("baa-off");
    let cmd = format!("touch {}", marker.join("ran").display());
    let text = format!("```baa\n@conductor.exec\n{cmd}\n```\n");
    ingest(&d, &message("chatgpt", "c1", "m-off", "assistant", &text, Some(CLIENT), Some(TAB)));
    let frames = sim.wait_deliveries(1);
    assert!(frames[0]["message_text"].as_str().unwrap().starts_with("[renewal] "), "{frames:?}");
    assert!(d.get("/v1/executions").data()["executions"].as_array().unwrap().is_empty());
    assert!(!marker.join("ran").exists());
}

#[test]
fn tools_not_allowed_are_rejected_and_nothing_runs() {
    // The default tools: describe, status, files.read.
    let b = Baa::start(json!({ "baa": { "allowed_tools": ["describe", "status", "files.read"] } }));
    let sim = b.sim("succeed");
    b.conversation("c1");
    let text = block("@conductor.exec", &format!("touch {}", b.path("ran").display()))
        + &block("@conductor.files.write", "{\"path\": \"new.txt\", \"content\": \"x\"}")
        + &block("@conductor.renewal.manual", "")
        + &block("@conductor.status", "");
    b.say("c1", "m1", &text);
    let execs = b.wait_final("m1", 4);
    let rejected = outcome("rejected", "tool_not_allowed");
    assert_eq!(outcomes(&execs), [rejected.clone(), rejected.clone(), rejected, ok()]);
    assert!(execs[0]["started_at"].is_null());
    assert!(!b.path("ran").exists() && !b.path("new.txt").exists());
    let sent = sim.wait_deliveries(1)[0]["message_text"].as_str().unwrap().to_string();
    assert!(
        sent.starts_with("[baa] exec: error — tool_not_allowed: exec is not in baa.allowed_tools"),
        "{sent}"
    );
}

#[test]
fn paths_outside_the_roots_are_rejected_and_nothing_is_touched() {
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    let outside = TempDir::new("baa-outside");
    let outside_dir = std::fs::canonicalize(outside.path()).unwrap();
    std::fs::write(outside_dir.join("secret.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(&outside_dir, b.path("escape")).unwrap();
    let rel = format!("../{}", outside_dir.file_name().unwrap().to_str().unwrap());
    let root_name = b.root.file_name().unwrap().to_str().unwrap().to_string();
    let blocks = [
        block("@conductor.files.read", &outside_dir.join("secret.txt").display().to_string()),
        block("@conductor.files.read", &format!("{rel}/secret.txt")),
        block("@conductor.files.read", "escape/secret.txt"),
        block(
            "@conductor.files.write",
            &json!({ "path": outside_dir.join("w1").display().to_string(), "content": "x" }).to_string(),
        ),
        block(
            "@conductor.files.write",
            &json!({ "path": format!("sub/../../{root_name}/../w2"), "content": "x" }).to_string(),
        ),
        block("@conductor.files.write", &json!({ "path": "escape/w3", "content": "x" }).to_string()),
        block("@conductor.exec", &json!({ "command": "touch w4", "cwd": "escape" }).to_string()),
        block(
            "@conductor.exec",
            &json!({ "command": "touch w5", "cwd": outside_dir.display().to_string() }).to_string(),
        ),
    ];
    b.say("c1", "m1", &blocks.concat());
    let execs = b.wait_final("m1", 8);
    for e in &execs {
        assert_eq!(
            (e["status"].as_str(), e["error"].as_str()),
            (Some("rejected"), Some("path_outside_roots")),
            "{e:#}"
        );
        assert!(e["result"].is_null() && e["started_at"].is_null());
    }
    // The refusal says where the path led, and never what is there.
    assert!(execs[2]["summary"].as_str().unwrap().contains("outside baa.allowed_roots"));
    assert!(!execs.iter().any(|e| e.to_string().contains("top secret")));
    let parent = outside_dir.parent().unwrap();
    for f in ["w1", "w3", "w4", "w5"] {
        assert!(!outside_dir.join(f).exists(), "{f} was written");
    }
    assert!(!parent.join("w2").exists());
    assert_eq!(std::fs::read_dir(&outside_dir).unwrap().count(), 1);
}

#[test]
fn broken_blocks_fail_alone_beside_valid_ones() {
    let b = Baa::start(json!({ "baa": { "max_blocks_per_message": 5 } }));
    let sim = b.sim("succeed");
    b.conversation("c1");
    let text = [
        block("not a header", ""),
        block("@conductor.status", ""),
        block("@conductor.exec {\"command\": ", ""),
        block("@conductor.rm_rf", ""),
        block("@elsewhere.exec", "ls"),
        block("@conductor.describe", ""),
        "```json\n@conductor.exec rm -rf /\n```\n".to_string(),
        "````md\n```baa\n@conductor.exec rm -rf /\n```\n````\n".to_string(),
        "```baa\n@conductor.status\n".to_string(),
    ]
    .concat();
    b.say("c1", "m1", &text);
    let execs = b.wait_final("m1", 7);
    assert_eq!(
        outcomes(&execs),
        [
            outcome("invalid", "missing_header"),
            ok(),
            outcome("invalid", "invalid_json"),
            outcome("invalid", "unknown_tool"),
            outcome("invalid", "unknown_target"),
            outcome("rejected", "too_many_blocks"),
            outcome("rejected", "too_many_blocks"),
        ]
    );
    assert_eq!(execs[0]["params"], "not a header");
    assert!(execs[0]["params_kind"].is_null());
    assert_eq!(execs[2]["tool"], "exec");
    let sent = sim.wait_deliveries(1)[0]["message_text"].as_str().unwrap().to_string();
    assert!(sent.starts_with("[baa] block 0: error — missing_header: "), "{sent}");
    assert!(sent.contains("[baa] status: ok — {"), "{sent}");
    assert!(sent.contains("[baa] exec: error — invalid_json: params are not a JSON object"), "{sent}");
    assert!(sent.contains("[baa] elsewhere.exec: error — unknown_target"), "{sent}");
    // Within the limit, an unclosed last block is invalid, not run.
    b.say("c1", "m2", "```baa\n@conductor.status\n```\n```baa\n@conductor.status\n");
    let execs = b.wait_final("m2", 2);
    assert_eq!(outcomes(&execs), [ok(), outcome("invalid", "unclosed_block")]);
}

#[test]
fn a_manual_conversation_runs_nothing_now_or_later() {
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    let lc = renewal_support::new_conversation(&b.d, "chatgpt", "c1", Some(CLIENT), Some(TAB));
    b.say("c1", "m-manual", &block("@conductor.exec", &format!("touch {}", b.path("ran").display())));
    set_status(&b.d, &lc, "auto");
    // A later message runs: the earlier one was never queued.
    b.say("c1", "m-later", &block("@conductor.status", ""));
    b.wait_final("m-later", 1);
    assert!(b.of_message("m-manual").is_empty());
    assert!(!b.path("ran").exists());
}

#[test]
fn a_paused_system_runs_nothing_now_or_after_resume() {
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    system(&b.d, "pause");
    b.say("c1", "m-paused", &block("@conductor.exec", &format!("touch {}", b.path("ran").display())));
    system(&b.d, "resume");
    b.say("c1", "m-later", &block("@conductor.status", ""));
    b.wait_final("m-later", 1);
    assert!(b.of_message("m-paused").is_empty());
    assert!(!b.path("ran").exists());
}

#[test]
fn block_text_and_output_never_reach_the_log() {
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    std::fs::write(b.path("key.txt"), "file-secret-5c1f").unwrap();
    let text = block("@conductor.exec", "echo output-secret-7a2e # command-secret-93bd")
        + &block("@conductor.files.read", "key.txt")
        + &block("@conductor.files.write", "{\"path\": \"out.txt\", \"content\": \"written-secret-44e0\"}");
    b.say("c1", "m1", &text);
    b.wait_final("m1", 3);
    b.wait_reply("m1", "done", |j| j["status"] == "done");
    let ok = wait_until(WAIT, || b.d.stderr_text().contains("reply job"));
    assert!(ok, "{}", b.stderr_tail());
    let log = b.d.stderr_text();
    for secret in ["output-secret-7a2e", "command-secret-93bd", "file-secret-5c1f", "written-secret-44e0"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}
