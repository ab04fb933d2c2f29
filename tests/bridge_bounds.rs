//! What the daemon keeps about plugins stays bounded whatever they send
//! (docs/BRIDGE.md "Bounds"): the tabs of a client (the first ones of a
//! `tabs` frame, the `ack` saying how many were left out), the lost clients
//! (the longest lost forgotten first), the login states of a client and
//! their `account`, and a final message's `route.params` — so
//! `GET /v1/browser` stays within a size set by those bounds, however many
//! client ids churn through.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::bridge::{browser, client_view, hello};
use support::ws::WsClient;
use support::{message_body, wait_until, Daemon, DaemonOpts};

/// `hub::MAX_LOST_CLIENTS`, `frames::MAX_TABS`, `frames::MAX_TABS_BYTES`.
const MAX_LOST: usize = 32;
const MAX_TABS: usize = 200;
const MAX_TABS_BYTES: usize = 128 * 1024;

fn start() -> Daemon {
    Daemon::start(DaemonOpts::new().config(support::quiet_timed_jobs()))
}

fn tabs_frame(count: usize, text: &str) -> Value {
    let tabs: Vec<Value> = (1..=count)
        .map(|i| {
            json!({"tab_id": i, "platform": "claude", "url": format!("https://claude.ai/chat/{i}/{text}"),
                        "title": text, "conversation_id": format!("c{i}")})
        })
        .collect();
    json!({"type": "tabs", "tabs": tabs})
}

fn connected(d: &Daemon) -> u64 {
    d.get("/v1/system").data()["clients"].as_u64().unwrap()
}

#[test]
fn churned_clients_with_many_large_tabs_keep_the_browser_view_bounded() {
    let d = start();
    // 40 client ids in turn, each with 150 tabs of ~2 KiB: kept whole,
    // 12 MiB of tabs would be listed.
    let text = "t".repeat(1000);
    for i in 0..40 {
        let mut c = hello(&d, &format!("churn-{i:02}"), &["claude"]);
        let ack = c.call("tabs-1", tabs_frame(150, &text));
        assert_eq!(ack["type"], "ack", "{ack}");
        let kept = ack["tabs_kept"].as_u64().expect("the ack says how many tabs were kept") as usize;
        assert!(kept > 0 && kept < 150 && ack["tabs_dropped"] == json!(150 - kept), "{ack}");
        c.login("claude");
        c.close();
        // One after the other, so the order they were lost in is known.
        assert!(wait_until(Duration::from_secs(10), || connected(&d) == 0), "churn-{i:02} still connected");
    }
    let resp = d.get("/v1/browser");
    assert_eq!(resp.status, 200);
    let size = resp.body.len();
    assert!(size < MAX_LOST * (MAX_TABS_BYTES + 8 * 1024), "GET /v1/browser is {size} bytes");
    let clients = resp.data()["clients"].as_array().unwrap().clone();
    let mut ids: Vec<&str> = clients.iter().map(|c| c["client_id"].as_str().unwrap()).collect();
    ids.sort();
    let newest: Vec<String> = (40 - MAX_LOST..40).map(|i| format!("churn-{i:02}")).collect();
    assert_eq!(ids, newest, "the longest lost are forgotten first");
    assert!(clients.iter().all(|c| c["status"] == "lost"));
    // A forgotten client that comes back starts afresh, and is listed again.
    let mut back = hello(&d, "churn-00", &["claude"]);
    back.ping();
    assert_eq!(client_view(&d, "churn-00").unwrap()["tabs"], json!([]));
    assert!(d.stderr_text().contains("more tabs than kept"), "the cut is logged");
}

#[test]
fn a_tab_list_keeps_its_first_tabs_and_says_how_many_it_left_out() {
    let d = start();
    let mut c = hello(&d, "many-tabs", &["claude"]);
    for round in 0..2 {
        let ack = c.call(&format!("tabs-{round}"), tabs_frame(500, "x"));
        assert_eq!(
            (ack["type"].as_str(), &ack["tabs_kept"], &ack["tabs_dropped"]),
            (Some("ack"), &json!(MAX_TABS), &json!(300)),
            "{ack}"
        );
    }
    let tabs = client_view(&d, "many-tabs").unwrap()["tabs"].as_array().unwrap().clone();
    let ids: Vec<u64> = tabs.iter().map(|t| t["tab_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=MAX_TABS as u64).collect::<Vec<_>>(), "the first tabs, in order");
    // The log says so once per connection, not at every tab change.
    assert_eq!(d.stderr_text().matches("more tabs than kept").count(), 1, "{}", d.stderr_text());
    // A list within the bounds is kept whole, with a plain ack.
    let ack = c.call("tabs-small", tabs_frame(3, "x"));
    assert!(ack.get("tabs_dropped").is_none(), "{ack}");
    assert_eq!(client_view(&d, "many-tabs").unwrap()["tabs"].as_array().unwrap().len(), 3);
}

fn login(c: &mut WsClient, id: &str, platform: &str, account: Value) -> Value {
    c.call(id, json!({"type": "login_state", "platform": platform, "account": account}))
}

#[test]
fn login_states_are_bounded_per_client_and_in_size() {
    let d = start();
    let mut c = hello(&d, "logins", &["claude"]);
    for i in 0..64 {
        let ack = login(&mut c, &format!("l{i}"), &format!("p{i:02}"), json!({"email_hint": "a***"}));
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let refused = login(&mut c, "l64", "p64", json!({}));
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("invalid_frame")),
        "{refused}"
    );
    // A platform already reported may still be updated.
    assert_eq!(login(&mut c, "again", "p00", json!({"email_hint": "b***"}))["type"], "ack");
    let big = login(&mut c, "big", "p01", json!({"email_hint": "a".repeat(2048)}));
    assert_eq!(big["code"], "invalid_frame", "{big}");
    assert!(big["message"].as_str().unwrap().contains("\"account\""), "{big}");
    let states = browser(&d)["login_states"].as_array().unwrap().clone();
    assert_eq!(states.len(), 64);
    assert!(states.iter().all(|s| s["platform"] != "p64"));
}

#[test]
fn route_params_are_bounded_on_both_doors() {
    let d = start();
    let big = json!({"conversationId": "c".repeat(5000)});
    let mut body = message_body("claude", "c1", "m1", "hi");
    body["route"] = json!({"path": "/chat/c1", "params": big});
    let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "route.params", "{e}");
    let mut c = hello(&d, "params", &["claude"]);
    let mut frame = body.clone();
    frame["type"] = json!("browser.final_message");
    let answer = c.call("fm-1", frame.clone());
    assert_eq!(answer["code"], "invalid_frame", "{answer}");
    assert!(answer["message"].as_str().unwrap().contains("route.params"), "{answer}");
    // Ordinary params pass.
    frame["route"]["params"] = json!({"conversationId": "c1"});
    assert_eq!(c.call("fm-2", frame)["type"], "ack");
}
