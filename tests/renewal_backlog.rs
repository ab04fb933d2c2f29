//! The renewal loop at volume, through the plugin's own path: the plugin
//! simulator replays a backlog of final messages over its WebSocket
//! (`--messages-file`, pipelined), and every message of an `auto`
//! conversation becomes exactly one job, delivered back into its own tab.
//! This runs the pipelined ingest, the projector and the dispatcher's
//! overlapped chunks (ticker/pipeline.rs) together, with more jobs than one
//! chunk holds.

mod renewal_support;
mod support;

use std::collections::HashSet;

use renewal_support::*;
use serde_json::{json, Value};
use support::wait_until;

const CLIENT: &str = "sim-backlog";
const N: usize = 150;

#[test]
fn a_backlog_replayed_over_the_websocket_is_renewed_once_per_message() {
    let d = start(json!({
        "timed_jobs": { "interval_ms": 20, "max_messages_per_tick": 500, "max_tasks_per_tick": 500 },
        "renewal": { "inter_job_jitter_ms": [0, 0], "cooldown_ms": 0 },
        "policy": { "jitter": { "min_ms": 0, "max_ms": 0, "mu_ms": 0, "sigma_ms": 0 } }
    }));
    let db = d.db_path();
    for i in 0..N {
        seed_conversation(&db, &format!("lc_{i}"), "chatgpt", "auto", "idle");
        seed_link(
            &db,
            &format!("link_{i}"),
            &format!("lc_{i}"),
            "chatgpt",
            Some(CLIENT),
            &format!("conv_{i}"),
            Some(i as i64 + 1),
        );
    }
    let lines: String = (0..N)
        .map(|i| {
            json!({ "platform": "chatgpt", "conversation_id": format!("conv_{i}"), "message_id": format!("msg_{i}"),
                    "role": "assistant", "text": format!("answer number {i}"), "tab_id": i + 1 })
            .to_string()
                + "\n"
        })
        .collect();
    let file = d.temp_dir().join("backlog.jsonl");
    std::fs::write(&file, lines).unwrap();
    let sim = Sim::spawn(&d, CLIENT, &["--messages-file", file.to_str().unwrap()]);

    let summary = format!("messages-file: {N} sent, {N} acked, 0 rejected");
    assert!(
        wait_until(WAIT, || sim.transcript().contains(&summary)),
        "the simulator did not report `{summary}`: {:?}",
        sim.transcript()
    );
    let done = |d: &support::Daemon| {
        d.get("/v1/renewal/jobs?status=done&limit=500").data()["count"].as_u64().unwrap()
    };
    assert!(wait_until(WAIT, || done(&d) == N as u64), "{} of {N} jobs done: {}", done(&d), log_tail(&d, 20));

    // Exactly one job per message, each delivered once, into its own tab.
    let jobs = all_jobs(&d);
    assert_eq!(jobs.len(), N);
    let messages: HashSet<&str> = jobs.iter().map(|j| j["message_id"].as_str().unwrap()).collect();
    assert_eq!(messages.len(), N);
    let deliveries: Vec<Value> =
        sim.received().into_iter().filter(|f| f["type"] == "proxy_delivery").collect();
    assert_eq!(deliveries.len(), N, "one delivery per job");
    for delivery in &deliveries {
        let conv = delivery["conversation_id"].as_str().unwrap();
        let i: i64 = conv.strip_prefix("conv_").unwrap().parse().unwrap();
        assert_eq!(delivery["tab_id"], i + 1, "{delivery}");
    }
    for j in &jobs {
        assert_eq!(j["attempt_count"], 1, "{j}");
    }
}
