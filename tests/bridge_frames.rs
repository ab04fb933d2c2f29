//! The plugin bridge (docs/BRIDGE.md) frame by frame, with a real
//! WebSocket client against the real daemon: every plugin → daemon frame
//! type and its answer (`hello`, `tabs`, `login_state`, the final message,
//! the answers to the daemon's requests, `ping`) and the frame `id` echoed
//! in acks and errors. Bad frames are in `bridge_frame_errors.rs`, refused
//! upgrades in `bridge_upgrade.rs`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::bridge::{browser, client_view, hello, post_in_thread};
use support::ws::{self, connect, FRAME_TIMEOUT};
use support::{now_ms, quiet_timed_jobs, Daemon, DaemonOpts};

fn start(config: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config))
}

fn plain() -> Daemon {
    start(quiet_timed_jobs())
}

/// Read deadline of the POSTs made on their own thread.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn hello_is_answered_with_hello_ack_then_state_snapshot() {
    let d = start(json!({"timed_jobs": {"interval_ms": 3_600_000}, "bridge": {"heartbeat_ms": 7000}}));
    let mut c = connect(&d.ws_url(), &[]);
    let before = now_ms();
    let (ack, snapshot) = c.hello("firefox-main", &["chatgpt", "claude"]);
    let after = now_ms();
    assert!(ack["connection_id"].as_str().unwrap().starts_with("conn_"), "{ack}");
    assert_eq!(ack["protocol_version"], 1, "{ack}");
    assert_eq!(ack["heartbeat_ms"], 7000, "{ack}");
    let server_time = ack["server_time"].as_i64().unwrap();
    assert!((before - 5..=after + 5).contains(&server_time), "{server_time} not in [{before}, {after}]");
    assert_eq!(snapshot["system"]["automation_state"], "running", "{snapshot}");
    assert_eq!(snapshot["automation_conversations"], json!([]), "{snapshot}");

    let view = client_view(&d, "firefox-main").expect("client listed");
    assert_eq!(view["status"], "connected");
    assert_eq!(view["connection_id"], ack["connection_id"]);
    assert_eq!(view["browser"], "firefox");
    assert_eq!(view["version"], "1.4.0");
    assert_eq!(view["platforms"], json!(["chatgpt", "claude"]));
    assert_eq!(view["tabs"], json!([]));
    assert_eq!(d.get("/v1/system").data()["clients"], 1);

    // `/ws/firefox` is an alias of `/ws/browser`.
    let mut alias = connect(&ws::url_with_path(&d.ws_url(), "/ws/firefox"), &[]);
    let (ack2, _) = alias.hello("firefox-other", &["gemini"]);
    assert_ne!(ack2["connection_id"], ack["connection_id"]);
    assert_eq!(d.get("/v1/system").data()["clients"], 2);
}

#[test]
fn tabs_are_acked_and_shown_in_get_browser() {
    let d = plain();
    let mut c = hello(&d, "ff-tabs", &["chatgpt", "claude"]);
    let ack = c.call(
        "t-1",
        json!({"type": "tabs", "tabs": [
            {"tab_id": 17, "platform": "chatgpt", "url": "https://chatgpt.com/c/abc", "title": "A", "conversation_id": "abc"},
            {"tab_id": 18, "platform": "claude", "url": "https://claude.ai/chat/x"},
        ]}),
    );
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["id"], "t-1");
    let view = client_view(&d, "ff-tabs").unwrap();
    assert_eq!(
        view["tabs"],
        json!([
            {"tab_id": 17, "platform": "chatgpt", "url": "https://chatgpt.com/c/abc", "title": "A", "conversation_id": "abc"},
            {"tab_id": 18, "platform": "claude", "url": "https://claude.ai/chat/x", "title": null, "conversation_id": null},
        ])
    );
    // A new list replaces the old one.
    let ack = c.call("t-2", json!({"type": "tabs", "tabs": [{"tab_id": 3, "platform": "gemini"}]}));
    assert_eq!(ack["type"], "ack", "{ack}");
    let tabs = client_view(&d, "ff-tabs").unwrap()["tabs"].clone();
    assert_eq!(tabs.as_array().unwrap().len(), 1, "{tabs}");
    assert_eq!(tabs[0]["tab_id"], 3);
    let ack = c.call("t-3", json!({"type": "tabs", "tabs": []}));
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(client_view(&d, "ff-tabs").unwrap()["tabs"], json!([]));
}

#[test]
fn login_state_is_acked_with_the_dropped_keys() {
    let d = plain();
    let mut c = hello(&d, "ff-login", &["claude", "chatgpt"]);
    let captured = now_ms() - 1000;
    let ack = c.call(
        "l-1",
        json!({"type": "login_state", "platform": "claude", "captured_at": captured,
               "fingerprint": "sha256:abc", "account": {"email_hint": "a***@x.com", "organization_id": "org_1"}}),
    );
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["id"], "l-1");
    assert_eq!(ack["dropped"], json!([]), "{ack}");

    let ack = c.call(
        "l-2",
        json!({"type": "login_state", "platform": "chatgpt", "captured_at": captured,
               "headers": {"x-a": "1"}, "cookies": "c=1",
               "account": {"email_hint": "b***@x.com", "deep": [{"Authorization": "Bearer z"}]}}),
    );
    assert_eq!(ack["type"], "ack", "{ack}");
    let mut dropped: Vec<String> =
        ack["dropped"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    dropped.sort();
    assert_eq!(dropped, vec!["Authorization", "cookies", "headers"], "{ack}");

    let view = browser(&d);
    let logins = view["login_states"].as_array().unwrap();
    assert_eq!(logins.len(), 2, "{view}");
    let claude = logins.iter().find(|l| l["platform"] == "claude").unwrap();
    assert_eq!(
        claude,
        &json!({"client_id": "ff-login", "platform": "claude", "status": "fresh", "captured_at": captured,
                "fingerprint": "sha256:abc", "account": {"email_hint": "a***@x.com", "organization_id": "org_1"}})
    );
    let chatgpt = logins.iter().find(|l| l["platform"] == "chatgpt").unwrap();
    assert_eq!(chatgpt["account"], json!({"email_hint": "b***@x.com", "deep": [{}]}), "{chatgpt}");
    // Filters.
    let only = d.get("/v1/browser?platform=claude").data();
    assert_eq!(only["login_states"].as_array().unwrap().len(), 1);
}

#[test]
fn final_message_is_acked_only_after_commit() {
    let d = plain();
    let mut c = hello(&d, "ff-msg", &["chatgpt"]);
    let frame = json!({
        "type": "browser.final_message", "platform": "chatgpt", "conversation_id": "abc",
        "message_id": "msg_1", "role": "assistant", "text": "Hello there", "observed_at": 1_711_800_000_000i64,
        "page_url": "https://chatgpt.com/c/abc", "page_title": "Title", "tab_id": 17,
        "route": {"path": "/c/abc", "pattern": "/c/:conversationId", "params": {"conversationId": "abc"}},
        "organization_id": null, "shell_page": false,
    });
    let ack = c.call("f-1", frame.clone());
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["id"], "f-1");
    assert_eq!(ack["message_id"], "msg_1");
    assert_eq!(ack["duplicate"], false);
    let lc = ack["local_conversation_id"].as_str().unwrap().to_string();
    let link = ack["link_id"].as_str().unwrap().to_string();
    assert!(lc.starts_with("lc_"), "{ack}");
    assert!(!link.is_empty());

    // Committed before the ack: a fresh reader sees it at once, both through
    // the database file and through the API.
    let n: i64 = support::db(&d.db_path())
        .query_row("SELECT COUNT(*) FROM messages WHERE id = 'msg_1'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "message row not committed when the ack arrived");
    let m = d.get("/v1/messages/msg_1").data();
    assert_eq!(m["raw_text"], "Hello there");
    assert_eq!(m["client_id"], "ff-msg");
    assert_eq!(m["tab_id"], 17);
    assert_eq!(m["page_title"], "Title");
    let list = d.get("/v1/messages?platform=chatgpt").data();
    assert_eq!(list["count"], 1);
    assert_eq!(list["messages"][0]["message_id"], "msg_1");

    let conv = d.get(&format!("/v1/renewal/conversations/{lc}")).data();
    assert_eq!(conv["automation_status"], "manual");
    assert_eq!(conv["title"], "Title");
    assert_eq!(conv["last_message_id"], "msg_1");
    let active = &conv["active_link"];
    assert_eq!(active["link_id"], link.as_str());
    assert_eq!(active["client_id"], "ff-msg");
    assert_eq!(active["target_kind"], "browser.proxy_delivery");
    assert_eq!(active["target_id"], "tab:17");
    assert_eq!(active["target_payload"]["clientId"], "ff-msg");
    assert_eq!(active["target_payload"]["tabId"], 17);
    assert_eq!(active["route_pattern"], "/c/:conversationId");

    // The same message again: a no-op, reported as a duplicate.
    let again = c.call("f-2", frame);
    assert_eq!(again["type"], "ack", "{again}");
    assert_eq!(again["id"], "f-2");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["message_id"], "msg_1");
    assert_eq!(again["local_conversation_id"], lc.as_str());
    assert_eq!(d.get("/v1/messages").data()["count"], 1);

    // Without tab_id: stored with no route.
    let ack = c.call(
        "f-3",
        json!({"type": "browser.final_message", "platform": "chatgpt", "conversation_id": "def",
               "message_id": "msg_2", "text": "x"}),
    );
    assert_eq!(ack["type"], "ack", "{ack}");
    let conv = d
        .get(&format!("/v1/renewal/conversations/{}", ack["local_conversation_id"].as_str().unwrap()))
        .data();
    assert_eq!(conv["active_link"]["target_kind"], Value::Null, "{conv}");
}

#[test]
fn action_result_answers_a_browser_action() {
    let d = plain();
    let mut c = hello(&d, "ff-act", &["chatgpt"]);
    let call = post_in_thread(
        &d,
        "/v1/browser/actions",
        json!({"action": "tab_focus", "platform": "chatgpt", "tab_id": 17, "payload": {"x": 1}, "timeout_ms": 10_000}),
        POST_TIMEOUT,
    );
    let action = c.recv_type("action", FRAME_TIMEOUT);
    let request_id = action["request_id"].as_str().unwrap().to_string();
    assert!(request_id.starts_with("act_"), "{action}");
    assert_eq!(action["action"], "tab_focus");
    assert_eq!(action["platform"], "chatgpt");
    assert_eq!(action["tab_id"], 17);
    assert_eq!(action["payload"], json!({"x": 1}));
    c.send_json(&json!({
        "type": "action_result", "request_id": request_id, "action": "tab_focus",
        "accepted": true, "completed": true, "failed": false, "reason": null,
        "http_status": 200, "received_at": now_ms(), "result": {"focused": true},
        "target": {"client_id": "ff-act", "platform": "chatgpt", "tab_id": 17},
    }));
    let (resp, _) = call.join().unwrap();
    let data = resp.data();
    assert_eq!(data["accepted"], true);
    assert_eq!(data["completed"], true);
    assert_eq!(data["failed"], false);
    assert_eq!(data["reason"], Value::Null);
    assert_eq!(data["result"], json!({"focused": true}));
    assert_eq!(data["target"]["tab_id"], 17);
    assert_eq!(data["client_id"], "ff-act");
    assert_eq!(data["request_id"], request_id.as_str());
    assert_eq!(data["connection_id"], client_view(&d, "ff-act").unwrap()["connection_id"]);
    // A platform-bound action went through the policy: a success on the target.
    let targets = browser(&d)["policy"]["targets"].clone();
    let t = targets.as_array().unwrap().iter().find(|t| t["client_id"] == "ff-act").expect("policy target");
    assert_eq!(t["last_activity_reason"], "complete_success", "{t}");
    assert!(t["last_success_at"].is_i64());

    // A late duplicate answer for the finished request is ignored, and the
    // connection keeps serving.
    c.send_json(&json!({"type": "action_result", "request_id": request_id, "accepted": true}));
    c.ping();
}

#[test]
fn api_response_and_stream_frames_answer_relays() {
    let d = plain();
    let mut c = hello(&d, "ff-relay", &["claude"]);
    c.login("claude");
    let plain_call = post_in_thread(
        &d,
        "/v1/browser/request",
        json!({"platform": "claude", "method": "GET", "path": "/api/organizations", "timeout_ms": 10_000}),
        POST_TIMEOUT,
    );
    let req = c.recv_type("api_request", FRAME_TIMEOUT);
    assert_eq!(req["path"], "/api/organizations");
    assert_eq!(req["stream"], false);
    c.send_json(&json!({"type": "api_response", "request_id": req["request_id"], "status": 200,
                        "headers": {"x": "y"}, "body": {"orgs": []}}));
    let (resp, _) = plain_call.join().unwrap();
    let data = resp.data();
    assert_eq!(data["status"], 200);
    assert_eq!(data["body"], json!({"orgs": []}));
    assert_eq!(data["request_id"], req["request_id"]);

    let stream_call = post_in_thread(
        &d,
        "/v1/browser/request",
        json!({"platform": "claude", "method": "POST", "path": "/api/chat", "stream": true, "timeout_ms": 10_000}),
        POST_TIMEOUT,
    );
    let req = c.recv_type("api_request", FRAME_TIMEOUT);
    assert_eq!(req["stream"], true);
    let rid = req["request_id"].clone();
    c.send_json(&json!({"type": "stream_event", "request_id": rid, "seq": 1, "data": "a"}));
    c.send_json(&json!({"type": "stream_event", "request_id": rid, "seq": 2, "data": {"b": 2}}));
    c.send_json(&json!({"type": "stream_end", "request_id": rid, "seq": 3, "status": 200}));
    let (resp, _) = stream_call.join().unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("text/event-stream"));
    assert_eq!(
        resp.text(),
        "event: stream_event\ndata: {\"data\":\"a\",\"seq\":1}\n\n\
         event: stream_event\ndata: {\"data\":{\"b\":2},\"seq\":2}\n\n\
         event: stream_end\ndata: {\"seq\":3,\"status\":200}\n\n"
    );
}

#[test]
fn ping_is_answered_with_pong_and_server_time() {
    let d = plain();
    let mut c = hello(&d, "ff-ping", &[]);
    let before = now_ms();
    c.send_json(&json!({"type": "ping"}));
    let pong = c.expect_json(FRAME_TIMEOUT);
    let after = now_ms();
    assert_eq!(pong["type"], "pong", "{pong}");
    let t = pong["server_time"].as_i64().expect("server_time");
    assert!((before - 5..=after + 5).contains(&t), "{t} not in [{before}, {after}]");
}

#[test]
fn frame_id_is_echoed_in_ack_and_error() {
    let d = plain();
    let mut c = hello(&d, "ff-id", &["chatgpt"]);
    let long_id = "i".repeat(128);
    let ack = c.call(&long_id, json!({"type": "tabs", "tabs": []}));
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["id"], long_id.as_str());
    let err = c.call("e-1", json!({"type": "no_such_type"}));
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "unknown_type");
    let err = c.call("e-2", json!({"type": "tabs"}));
    assert_eq!(err["code"], "invalid_frame");
    // Without an id, the answer carries `id: null`.
    c.send_json(&json!({"type": "tabs", "tabs": []}));
    let ack = c.expect_json(FRAME_TIMEOUT);
    assert_eq!(ack["type"], "ack");
    assert_eq!(ack["id"], Value::Null);
    // An id that breaks the 1–128 rule is itself an invalid frame.
    for bad in [json!("i".repeat(129)), json!(""), json!(7)] {
        c.send_json(&json!({"type": "tabs", "tabs": [], "id": bad}));
        let err = c.expect_json(FRAME_TIMEOUT);
        assert_eq!(err["type"], "error", "id {bad}: {err}");
        assert_eq!(err["code"], "invalid_frame", "id {bad}: {err}");
        assert!(err["message"].as_str().unwrap().contains("id"), "{err}");
    }
    c.ping();
}
