//! What an ingest does to conversations and links (docs/API.md "Messages",
//! docs/RENEWAL.md): the local conversation found or created, a second tab
//! making the first link inactive, and a repeated message pausing an
//! `auto` conversation at the third. The message routes themselves:
//! `tests/api_messages.rs`.

use std::collections::BTreeSet;

mod api_support;
mod support;

use api_support::*;
use serde_json::{json, Value};
use support::{message_body, now_ms, Daemon, DaemonOpts};

#[test]
fn ingest_finds_or_creates_the_local_conversation() {
    let d = Daemon::start(DaemonOpts::new().config(json!({"renewal": {"summary_limit": 12}})));
    let mut m1 = message_body("chatgpt", "abc", "m1", "first   answer\nthat is long");
    m1["observed_at"] = json!(1000);
    m1["page_title"] = json!("Old title");
    let a = ingest(&d, &m1);
    let lc = a["local_conversation_id"].as_str().unwrap().to_string();
    assert_eq!(a["message"]["summary"], "first answe…", "summary cut at summary_limit");

    let conv = conversation(&d, &lc);
    assert_keys(&conv, CONVERSATION_KEYS);
    assert_eq!(conv["local_conversation_id"], lc);
    assert_eq!(conv["platform"], "chatgpt");
    assert_eq!(conv["automation_status"], "manual", "new conversations start manual");
    assert_eq!(conv["last_non_paused_automation_status"], "manual");
    assert_eq!(conv["execution_state"], "idle");
    for null in ["pause_reason", "last_error", "cooldown_until", "paused_at"] {
        assert_eq!(conv.get(null), Some(&Value::Null), "{null}");
    }
    assert_eq!(conv["consecutive_failure_count"], 0);
    assert_eq!(conv["repeated_message_count"], 1);
    assert_eq!(conv["repeated_renewal_count"], 0);
    assert_eq!(conv["title"], "Old title");
    assert_eq!(conv["summary"], "first answe…");
    assert_eq!(conv["last_message_id"], "m1");
    assert_eq!(conv["last_message_at"], 1000);
    assert!(conv["created_at"].as_i64().unwrap() <= conv["updated_at"].as_i64().unwrap());

    // Same platform conversation: same local conversation, updated.
    let mut m2 = message_body("chatgpt", "abc", "m2", "second");
    m2["observed_at"] = json!(2000);
    m2["page_title"] = json!("New title");
    let b = ingest(&d, &m2);
    assert_eq!(b["local_conversation_id"], lc.as_str());
    let conv2 = conversation(&d, &lc);
    assert_eq!(conv2["title"], "New title");
    assert_eq!(conv2["summary"], "second");
    assert_eq!(conv2["last_message_id"], "m2");
    assert_eq!(conv2["last_message_at"], 2000);
    assert_eq!(conv2["created_at"], conv["created_at"], "an upsert never changes created_at");

    // An older message arriving late does not become the last message.
    let mut m0 = message_body("chatgpt", "abc", "m0", "older");
    m0["observed_at"] = json!(500);
    ingest(&d, &m0);
    let conv3 = conversation(&d, &lc);
    assert_eq!(conv3["last_message_id"], "m2");
    assert_eq!(conv3["last_message_at"], 2000);
    assert_eq!(conv3["summary"], "second");

    // Another conversation id, or the same id on another platform: new ones.
    let c = ingest(&d, &message_body("chatgpt", "other", "m3", "x"));
    let e = ingest(&d, &message_body("claude", "abc", "m4", "x"));
    let ids: BTreeSet<String> =
        [&a, &c, &e].iter().map(|v| v["local_conversation_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(d.get("/v1/system").data()["counts"]["conversations"], 3);
}

#[test]
fn a_second_tab_makes_the_first_link_inactive() {
    let d = daemon();
    let mut m1 = full_message("m1", 1000);
    m1["tab_id"] = json!(1);
    let a = ingest(&d, &m1);
    let lc = a["local_conversation_id"].as_str().unwrap().to_string();
    let link1 = a["link_id"].as_str().unwrap().to_string();

    let conv = conversation(&d, &lc);
    let link = &conv["active_link"];
    assert_keys(link, LINK_KEYS);
    assert_eq!(link["link_id"], link1.as_str());
    assert_eq!(link["local_conversation_id"], lc.as_str());
    assert_eq!(link["platform"], "chatgpt");
    assert_eq!(link["client_id"], "firefox-main");
    assert_eq!(link["remote_conversation_id"], "abc");
    assert_eq!(link["page_url"], "https://chatgpt.com/c/abc");
    assert_eq!(link["page_title"], "Title");
    assert_eq!(link["route_path"], "/c/abc");
    assert_eq!(link["route_pattern"], "/c/:conversationId");
    assert_eq!(link["route_params"], json!({"conversationId": "abc"}));
    assert_eq!(link["target_kind"], "browser.proxy_delivery");
    assert_eq!(link["target_id"], "tab:1");
    assert_eq!(
        link["target_payload"],
        json!({"clientId": "firefox-main", "conversationId": "abc", "pageUrl": "https://chatgpt.com/c/abc",
               "tabId": 1, "organizationId": "org-1", "shellPage": false})
    );
    assert_eq!(link["is_active"], true);
    assert_eq!(link["observed_at"], 1000);

    // The same conversation seen in tab 2: the new link is the active one.
    let mut m2 = full_message("m2", 2000);
    m2["tab_id"] = json!(2);
    let b = ingest(&d, &m2);
    assert_eq!(b["local_conversation_id"], lc.as_str());
    let link2 = b["link_id"].as_str().unwrap().to_string();
    assert_ne!(link1, link2);
    let list = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}")).data();
    assert_eq!(list["count"], 2);
    let active: Vec<&Value> =
        list["links"].as_array().unwrap().iter().filter(|l| l["is_active"] == true).collect();
    assert_eq!(active.len(), 1, "exactly one active link: {list}");
    assert_eq!(active[0]["link_id"], link2.as_str());
    assert_eq!(conversation(&d, &lc)["active_link"]["link_id"], link2.as_str());

    // Back in tab 1: its link is reused and active again.
    let mut m3 = full_message("m3", 3000);
    m3["tab_id"] = json!(1);
    let c = ingest(&d, &m3);
    assert_eq!(c["link_id"], link1.as_str());
    let active = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}&active=true")).data();
    assert_eq!(active["count"], 1);
    assert_eq!(active["links"][0]["link_id"], link1.as_str());
    assert_eq!(active["links"][0]["observed_at"], 3000);
    let inactive = d.get(&format!("/v1/renewal/links?local_conversation_id={lc}&active=false")).data();
    assert_eq!(inactive["count"], 1);
    assert_eq!(inactive["links"][0]["link_id"], link2.as_str());

    // Without a tab: a link with no route.
    let d2 = daemon();
    let data = ingest(&d2, &message_body("chatgpt", "x", "m1", "hi"));
    let conv = conversation(&d2, data["local_conversation_id"].as_str().unwrap());
    let link = &conv["active_link"];
    assert_eq!(link["target_kind"], Value::Null);
    assert_eq!(link["target_id"], Value::Null);
    assert_eq!(link["client_id"], Value::Null);
    assert_eq!(link["is_active"], true);
    assert_eq!(link["route_params"], json!({}));
    assert_eq!(link["target_payload"], json!({}));
}

#[test]
fn repeated_message_pauses_an_auto_conversation_at_three() {
    let d = daemon();
    let first = ingest(&d, &message_body("chatgpt", "loop", "m0", "same"));
    let lc = first["local_conversation_id"].as_str().unwrap().to_string();
    // While manual, repeats are counted but nothing is paused.
    ingest(&d, &message_body("chatgpt", "loop", "m1", "same"));
    ingest(&d, &message_body("chatgpt", "loop", "m2", "same"));
    let conv = conversation(&d, &lc);
    assert_eq!(conv["repeated_message_count"], 3);
    assert_eq!(conv["automation_status"], "manual");

    let conv = d.post_empty(&format!("/v1/renewal/conversations/{lc}/auto")).data();
    assert_eq!(conv["automation_status"], "auto");
    assert_eq!(conv["repeated_message_count"], 0, "switching to auto resets the counter");

    let count_after = |id: &str, text: &str| {
        ingest(&d, &message_body("chatgpt", "loop", id, text));
        let c = conversation(&d, &lc);
        (c["repeated_message_count"].as_i64().unwrap(), c["automation_status"].as_str().unwrap().to_string())
    };
    assert_eq!(count_after("m3", "alpha"), (1, "auto".into()));
    assert_eq!(count_after("m4", "alpha"), (2, "auto".into()));
    assert_eq!(count_after("m5", "beta"), (1, "auto".into()), "a different text starts over");
    assert_eq!(count_after("m6", "beta"), (2, "auto".into()));
    let before = now_ms();
    // Whitespace alone does not make a text different.
    assert_eq!(count_after("m7", "  beta\n"), (3, "paused".into()));
    let conv = conversation(&d, &lc);
    assert_eq!(conv["pause_reason"], "repeated_message");
    assert_eq!(conv["last_non_paused_automation_status"], "auto");
    let paused_at = conv["paused_at"].as_i64().unwrap();
    assert!(paused_at >= before && paused_at <= now_ms());
    let paused = d.get("/v1/renewal/conversations?status=paused").data();
    assert_eq!(paused["count"], 1);
}
