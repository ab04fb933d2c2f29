//! Instruction blocks end to end, tool by tool: an assistant message with
//! blocks is ingested into an `auto` conversation, the real daemon runs
//! them on its worker, the executions API shows the results, and the
//! `[baa]` reply reaches the simulator's tab as one `proxy_delivery`.

mod baa_support;
mod renewal_support;
mod support;

use baa_support::*;
use renewal_support::conversation;
use serde_json::{json, Value};

#[test]
fn describe_status_and_files_read_answer_in_one_reply() {
    let b = Baa::start(json!({}));
    let sim = b.sim("succeed");
    b.conversation("c1");
    std::fs::write(b.path("todo.md"), "- ship baa\n").unwrap();
    let text = format!(
        "Let me look around.\n\n{}{}{}",
        block("@conductor.describe", ""),
        block("@conductor.status", ""),
        block("@conductor.files.read {\"path\": \"todo.md\"}", "")
    );
    b.say("c1", "m-read", &text);
    let execs = b.wait_final("m-read", 3);
    assert_eq!(outcomes(&execs), [ok(), ok(), ok()]);
    let tools: Vec<&str> = execs.iter().map(|e| e["tool"].as_str().unwrap()).collect();
    assert_eq!(tools, ["describe", "status", "files.read"]);
    assert_eq!(execs[0]["result"]["tools"].as_array().unwrap().len(), 8);
    assert_eq!(execs[1]["result"]["automation_state"], "running");
    assert_eq!(execs[1]["result"]["counts"]["messages"], 2);
    assert_eq!(execs[2]["result"]["content"], "- ship baa\n");
    assert_eq!(execs[2]["params"], json!({ "path": "todo.md" }));
    assert_eq!(execs[2]["params_kind"], "json");
    for e in &execs {
        assert!(e["instruction_id"].as_str().unwrap().starts_with("ins_"));
        assert!(e["started_at"].as_i64().unwrap() <= e["finished_at"].as_i64().unwrap());
        assert_eq!(e["target"], "conductor");
    }
    // One reply, delivered once, into the message's tab.
    let reply = b.wait_reply("m-read", "done", |j| j["status"] == "done");
    assert_eq!(reply["payload"]["kind"], "baa.reply");
    let frames = sim.expect_deliveries(1);
    assert_eq!(frames[0]["tab_id"], TAB);
    assert_eq!(frames[0]["assistant_message_id"], "m-read");
    let sent = frames[0]["message_text"].as_str().unwrap();
    assert!(sent.starts_with("[baa] describe: ok — tools"), "{sent}");
    assert!(sent.contains("\n\n[baa] status: ok — {"), "{sent}");
    assert!(sent.ends_with("[baa] files.read: ok — - ship baa"), "{sent}");
    // The message itself is not also renewed.
    assert_eq!(b.jobs_of("m-read").len(), 1);
}

#[test]
fn exec_runs_in_the_root_and_leaves_an_artifact() {
    let b = Baa::start(json!({}));
    let sim = b.sim("succeed");
    b.conversation("c1");
    std::fs::create_dir(b.path("sub")).unwrap();
    let text = block("@conductor.exec", "pwd\necho to-stderr >&2")
        + &block("@conductor.exec {\"command\": \"pwd; exit 4\", \"cwd\": \"sub\"}", "");
    b.say("c1", "m-exec", &text);
    let execs = b.wait_final("m-exec", 2);
    assert_eq!(outcomes(&execs), [ok(), outcome("failed", "exit_code_4")]);
    let root = b.root.display().to_string();
    assert_eq!(
        execs[0]["result"],
        json!({ "exit_code": 0, "stdout": format!("{root}\n"),
                                           "stderr": "to-stderr\n", "truncated": false })
    );
    assert_eq!(execs[0]["params_kind"], "text");
    assert_eq!(execs[1]["result"]["stdout"], format!("{root}/sub\n"));
    assert_eq!(execs[1]["result"]["exit_code"], 4);
    let id = execs[0]["instruction_id"].as_str().unwrap();
    assert_eq!(execs[0]["artifact_path"], format!("artifacts/exec/{id}.txt"));
    let url = execs[0]["artifact_url"].as_str().unwrap();
    assert_eq!(url, format!("{}/artifact/exec/{id}.txt", b.d.base));
    let artifact = b.d.get(&format!("/artifact/exec/{id}.txt"));
    assert_eq!(artifact.status, 200);
    assert!(artifact.text().contains("--- stderr (10 bytes) ---\nto-stderr\n"), "{}", artifact.text());
    let frames = sim.expect_deliveries(1);
    let sent = frames[0]["message_text"].as_str().unwrap();
    assert!(sent.starts_with(&format!("[baa] exec: ok — {root}\n[stderr]\nto-stderr\n{url}\n\n")), "{sent}");
    assert!(sent.contains(&format!("[baa] exec: error — exit_code_4: {root}/sub")), "{sent}");
}

#[test]
fn exec_gets_the_environment_the_daemon_was_started_with() {
    // The daemon runs with glibc's tcache off (src/alloc.rs); the command
    // gets the person's own GLIBC_TUNABLES (here: this test's), not that.
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    let show = r#"printf '%s|%s' "${GLIBC_TUNABLES-unset}" "${BAA_CONDUCTOR_GLIBC_TUNABLES-unset}""#;
    b.say("c1", "m-env", &block("@conductor.exec", show));
    let execs = b.wait_final("m-env", 1);
    assert_eq!(outcomes(&execs), [ok()]);
    let own = std::env::var("GLIBC_TUNABLES").unwrap_or_else(|_| "unset".into());
    assert_eq!(execs[0]["result"]["stdout"], format!("{own}|unset"));
}

#[test]
fn files_write_creates_parents_and_appends() {
    let b = Baa::start(json!({}));
    let _sim = b.sim("succeed");
    b.conversation("c1");
    let text = block("@conductor.files.write", "{\"path\": \"notes/day/log.md\", \"content\": \"one\\n\"}")
        + &block(
            "@conductor.files.write",
            "{\"path\": \"notes/day/log.md\", \"content\": \"two\\n\", \"append\": true}",
        )
        + &block("@conductor.files.read", "notes/day/log.md");
    b.say("c1", "m-write", &text);
    let execs = b.wait_final("m-write", 3);
    assert_eq!(outcomes(&execs), [ok(), ok(), ok()]);
    assert_eq!(std::fs::read_to_string(b.path("notes/day/log.md")).unwrap(), "one\ntwo\n");
    assert_eq!(
        execs[1]["result"],
        json!({ "path": b.path("notes/day/log.md").display().to_string(),
                                           "bytes": 4, "append": true })
    );
    assert_eq!(execs[2]["result"]["content"], "one\ntwo\n");
}

#[test]
fn renewal_tools_switch_the_current_conversation() {
    let b = Baa::start(json!({}));
    let sim = b.sim("succeed");
    let lc = b.conversation("c1");
    // `renewal.auto` on an auto conversation: a no-op that succeeds.
    b.say("c1", "m-auto", &block("@conductor.renewal.auto", ""));
    assert_eq!(outcomes(&b.wait_final("m-auto", 1)), [ok()]);
    b.wait_reply("m-auto", "done", |j| j["status"] == "done");
    // Pause: the block after it no longer runs (the conversation is not
    // auto), and the reply waits until the conversation is auto again.
    b.say("c1", "m-pause", &(block("@conductor.renewal.pause", "") + &block("@conductor.status", "")));
    let execs = b.wait_final("m-pause", 2);
    assert_eq!(outcomes(&execs), [ok(), outcome("rejected", "automation_paused")]);
    let conv = conversation(&b.d, &lc);
    assert_eq!(
        (conv["automation_status"].as_str(), conv["pause_reason"].as_str()),
        (Some("paused"), Some("baa"))
    );
    assert_eq!(conv["execution_state"], "idle");
    let reply = b.wait_reply("m-pause", "deferred", |j| j["status"] == "pending");
    assert_eq!(reply["attempt_count"], 0);
    sim.expect_deliveries(1);
    renewal_support::set_status(&b.d, &lc, "auto");
    b.wait_reply("m-pause", "done", |j| j["status"] == "done");
    let frames = sim.expect_deliveries(2);
    let sent = frames[1]["message_text"].as_str().unwrap();
    assert!(sent.starts_with("[baa] renewal.pause: ok — this conversation is now paused"), "{sent}");
    assert!(sent.contains("[baa] status: error — automation_paused"), "{sent}");
    // Manual, the same way.
    b.say("c1", "m-manual", &block("@conductor.renewal.manual", ""));
    assert_eq!(outcomes(&b.wait_final("m-manual", 1)), [ok()]);
    assert_eq!(conversation(&b.d, &lc)["automation_status"], "manual");
}

#[test]
fn the_executions_api_filters_pages_and_404s() {
    let b = Baa::start(json!({ "baa": { "allowed_tools": ["status", "describe"] } }));
    let _sim = b.sim("succeed");
    let lc = b.conversation("c1");
    b.conversation("c2");
    b.say("c1", "m1", &(block("@conductor.status", "") + &block("@conductor.exec", "true")));
    b.wait_final("m1", 2);
    b.say("c2", "m2", &block("@conductor.describe", ""));
    b.wait_final("m2", 1);
    assert_eq!(b.executions("").len(), 3);
    assert_eq!(b.executions("tool=status").len(), 1);
    assert_eq!(b.executions("status=rejected").len(), 1);
    assert_eq!(b.executions("status=rejected")[0]["error"], "tool_not_allowed");
    assert_eq!(b.executions(&format!("local_conversation_id={lc}")).len(), 2);
    assert_eq!(b.executions("message_id=m2&status=succeeded").len(), 1);
    let page = b.d.get("/v1/executions?limit=2").data();
    assert_eq!((page["count"].as_u64(), page["next_offset"].as_u64()), (Some(2), Some(2)));
    // Newest first.
    let all = b.executions("");
    assert!(all.windows(2).all(|w| w[0]["created_at"].as_i64() >= w[1]["created_at"].as_i64()));
    assert_eq!(all[0]["message_id"], "m2");
    let bad = b.d.get("/v1/executions?status=done");
    let err = bad.error(400, "invalid_request");
    assert_eq!(err["details"]["field"], "status");
    let id = all[0]["instruction_id"].as_str().unwrap();
    let one = b.d.get(&format!("/v1/executions/{id}")).data();
    assert_eq!(one, all[0]);
    let missing = b.d.get("/v1/executions/ins_nope");
    let err = missing.error(404, "not_found");
    assert_eq!(
        (err["details"]["resource"].as_str(), err["details"]["resource_id"].as_str()),
        (Some("execution"), Some("ins_nope"))
    );
    // Discoverable, and counted.
    let routes: Vec<Value> = b.d.get("/v1/describe").data()["routes"].as_array().unwrap().clone();
    for (id, path) in
        [("executions.list", "/v1/executions"), ("executions.read", "/v1/executions/:instruction_id")]
    {
        assert!(routes.iter().any(|r| r["id"] == id && r["path"] == path && r["kind"] == "read"), "{id}");
    }
    let openapi = b.d.get("/v1/openapi.json").json();
    assert!(openapi["paths"]["/v1/executions/{instruction_id}"]["get"].is_object());
    let metrics = b.d.get("/metrics").text();
    assert!(metrics.contains("baa_executions{tool=\"status\",status=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("baa_executions{tool=\"exec\",status=\"rejected\"} 1"), "{metrics}");
}

#[test]
fn a_message_with_blocks_is_not_also_renewed() {
    let b = Baa::start(json!({}));
    let sim = b.sim("succeed");
    b.conversation("c1");
    // The block takes a second: the projector (every 50 ms, no settle
    // delay) examines the message long before its reply exists.
    b.say("c1", "m1", &block("@conductor.exec", "sleep 1; echo done"));
    let line = renewal_support::wait_log(&b.d, "m1 skipped", |l| {
        l["stage"] == "message_skipped" && l["details"]["message_id"] == "m1"
    });
    assert_eq!(line["result"], "baa_instructions");
    b.wait_final("m1", 1);
    let reply = b.wait_reply("m1", "done", |j| j["status"] == "done");
    assert_eq!(reply["payload"]["kind"], "baa.reply");
    let frames = sim.expect_deliveries(1);
    assert!(frames[0]["message_text"].as_str().unwrap().starts_with("[baa] exec: ok — done"));
}

/// The worker kicks the dispatcher when a reply job is committed. A kick
/// that finds the dispatcher busy delivering (here a slow plugin in another
/// conversation) is not lost: the dispatcher runs again as soon as it is
/// free, long before the next tick (a minute away here).
#[test]
fn a_reply_made_while_the_dispatcher_delivers_goes_out_right_after() {
    let b = Baa::start(json!({ "timed_jobs": { "interval_ms": 60000 } }));
    let slow = renewal_support::Sim::connect(&b.d, "slow", &["--mode", "succeed", "--delay-ms", "3000"]);
    let fast = b.sim("succeed");
    renewal_support::auto_conversation(&b.d, "chatgpt", "c-slow", Some("slow"), Some(21));
    b.conversation("c-fast");
    let say_slow = renewal_support::message(
        "chatgpt",
        "c-slow",
        "m-slow",
        "assistant",
        &block("@conductor.status", ""),
        Some("slow"),
        Some(21),
    );
    renewal_support::ingest(&b.d, &say_slow);
    slow.wait_deliveries(1);
    // The dispatcher now waits for the slow plugin's answer (3 s).
    b.say("c-fast", "m-fast", &block("@conductor.status", ""));
    b.wait_final("m-fast", 1);
    let started = std::time::Instant::now();
    let frames = fast.wait_deliveries(1);
    assert_eq!(frames[0]["assistant_message_id"], "m-fast");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "the reply waited for a tick");
    b.wait_reply("m-slow", "done", |j| j["status"] == "done");
}
