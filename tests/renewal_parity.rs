//! Spec points a parity check against the original system found (issue 16,
//! "Small correctness items"): a message without a tab never takes a
//! routable conversation off its link, and the `proxy_delivery` carries the
//! normalised `plan_id` and the trimmed text (docs/BRIDGE.md).

mod renewal_support;
mod support;

use renewal_support::*;
use serde_json::{json, Value};
use support::seed_job;

fn active_link(d: &support::Daemon, lc: &str) -> Value {
    conversation(d, lc)["active_link"].clone()
}

#[test]
fn a_message_without_a_tab_keeps_a_routable_active_link() {
    let d = start(json!({ "timed_jobs": { "interval_ms": 3_600_000 } }));
    let first = ingest(&d, &message("chatgpt", "c-1", "m-1", "assistant", "one", Some("ff"), Some(7)));
    let lc = first["local_conversation_id"].as_str().unwrap().to_string();
    // A script's POST without tab_id (a typo, say), same client and not.
    for (id, client) in [("m-2", Some("ff")), ("m-3", None)] {
        let again = ingest(&d, &message("chatgpt", "c-1", id, "assistant", "two", client, None));
        assert_eq!(again["duplicate"], false);
        assert_eq!(again["link_id"], first["link_id"], "the answer names the link that stays active");
        let link = active_link(&d, &lc);
        assert_eq!(link["link_id"], first["link_id"], "{link}");
        assert_eq!(link["target_kind"], "browser.proxy_delivery", "{link}");
        assert_eq!(link["target_id"], "tab:7", "{link}");
    }
    // The message itself is stored and is the conversation's last.
    assert_eq!(conversation(&d, &lc)["last_message_id"], "m-3");
    let links = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}")).data();
    assert_eq!(links["count"], 1, "no route-less link was made: {links}");
}

#[test]
fn a_message_without_a_tab_makes_a_routeless_link_only_when_there_is_none() {
    let d = start(json!({ "timed_jobs": { "interval_ms": 3_600_000 } }));
    let first = ingest(&d, &message("claude", "c-2", "m-1", "assistant", "one", None, None));
    let lc = first["local_conversation_id"].as_str().unwrap().to_string();
    let link = active_link(&d, &lc);
    assert_eq!(link["target_kind"], Value::Null, "{link}");
    // A tab arrives: the routable link takes over; a tab-less one after it
    // does not take it back.
    let routed = ingest(&d, &message("claude", "c-2", "m-2", "assistant", "two", Some("ff"), Some(3)));
    assert_ne!(routed["link_id"], first["link_id"]);
    ingest(&d, &message("claude", "c-2", "m-3", "assistant", "three", None, None));
    assert_eq!(active_link(&d, &lc)["link_id"], routed["link_id"]);
}

#[test]
fn the_delivery_carries_a_normalised_plan_id_and_the_trimmed_text() {
    let d = start(json!({}));
    let sim = Sim::connect(&d, "firefox-parity", &["--platform", "chatgpt"]);
    let db = d.db_path();
    seed_route(&db, "lc-parity", "chatgpt", "auto", Some("firefox-parity"), Some(4));
    let mut seed = due_job("job-parity", "lc-parity", "  \n[renewal] Msg two\t \n");
    seed.message_id = "Msg_Two/Y".into();
    seed_job(&db, &seed);
    let job = wait_job(&d, "job-parity", "done", |j| j["status"] == "done");
    let f = &sim.expect_deliveries(1)[0];
    assert_eq!(f["message_text"], "[renewal] Msg two", "{f}");
    assert_eq!(f["assistant_message_id"], "Msg_Two/Y");
    let plan = f["plan_id"].as_str().unwrap();
    let ms = plan.strip_prefix("renewal_msg-two-y_").unwrap_or_else(|| panic!("plan_id {plan}"));
    let ms: i64 = ms.parse().unwrap_or_else(|_| panic!("plan_id {plan}"));
    assert_between(
        "plan_id time",
        ms,
        job["started_at"].as_i64().unwrap(),
        job["finished_at"].as_i64().unwrap(),
    );
}
