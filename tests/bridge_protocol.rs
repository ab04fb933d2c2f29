//! The plugin bridge (docs/BRIDGE.md) frame by frame, with a real
//! WebSocket client against the real daemon: every plugin → daemon frame
//! type and its answer, every error path before and after `hello`, and the
//! upgrade refusals (path, origin, token, capacity).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bridge::{browser, client_view, hello, post_in_thread};
use support::ws::{self, connect, refused_status, try_connect, Event, WsClient, FRAME_TIMEOUT};
use support::{now_ms, quiet_timed_jobs, Daemon, DaemonOpts};

fn start(config: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config))
}

fn plain() -> Daemon {
    start(quiet_timed_jobs())
}

/// Read deadline of the POSTs made on their own thread.
const POST_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Frame types
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Error paths after hello: an error frame, and the connection stays open
// ---------------------------------------------------------------------------

#[test]
fn bad_frames_after_hello_get_errors_and_the_connection_stays_open() {
    let d = plain();
    let mut c = hello(&d, "ff-bad", &["chatgpt"]);
    // (raw text, expected code, a word the message must contain)
    let cases: Vec<(String, &str, &str)> = vec![
        ("not json at all".into(), "invalid_frame", ""),
        ("[1,2,3]".into(), "invalid_frame", ""),
        ("\"just a string\"".into(), "invalid_frame", ""),
        (json!({"id": "x1"}).to_string(), "invalid_frame", "type"),
        (json!({"id": "x2", "type": 5}).to_string(), "invalid_frame", "type"),
        (json!({"id": "x3", "type": "teleport"}).to_string(), "unknown_type", "teleport"),
        (json!({"id": "x4", "type": "tabs"}).to_string(), "invalid_frame", "tabs"),
        (json!({"id": "x5", "type": "tabs", "tabs": {}}).to_string(), "invalid_frame", "tabs"),
        (json!({"id": "x6", "type": "tabs", "tabs": [{"tab_id": "17", "platform": "chatgpt"}]}).to_string(), "invalid_frame", "tab_id"),
        (json!({"id": "x7", "type": "tabs", "tabs": [{"tab_id": 1, "platform": "ChatGPT"}]}).to_string(), "invalid_frame", "platform"),
        (json!({"id": "x8", "type": "tabs", "tabs": [{"tab_id": 1, "platform": "chatgpt", "title": 5}]}).to_string(), "invalid_frame", "title"),
        (json!({"id": "x9", "type": "login_state"}).to_string(), "invalid_frame", "platform"),
        (json!({"id": "x10", "type": "login_state", "platform": "claude", "captured_at": "now"}).to_string(), "invalid_frame", "captured_at"),
        (json!({"id": "x11", "type": "login_state", "platform": "claude", "account": "a"}).to_string(), "invalid_frame", "account"),
        (json!({"id": "x12", "type": "browser.final_message", "platform": "chatgpt", "conversation_id": "c", "message_id": "m"}).to_string(), "invalid_frame", "text"),
        (json!({"id": "x13", "type": "browser.final_message", "platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": 5}).to_string(), "invalid_frame", "text"),
        (json!({"id": "x14", "type": "browser.final_message", "platform": "chatgpt", "message_id": "m", "text": "t"}).to_string(), "invalid_frame", "conversation_id"),
        (json!({"id": "x15", "type": "browser.final_message", "platform": "Bad!", "conversation_id": "c", "message_id": "m", "text": "t"}).to_string(), "invalid_frame", "platform"),
        (json!({"id": "x16", "type": "browser.final_message", "platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": "t", "tab_id": "17"}).to_string(), "invalid_frame", "tab_id"),
        (json!({"id": "x17", "type": "browser.final_message", "platform": "chatgpt", "conversation_id": "c", "message_id": "m", "text": "t", "observed_at": "yesterday"}).to_string(), "invalid_frame", "observed_at"),
        (json!({"id": "x18", "type": "action_result", "accepted": true}).to_string(), "invalid_frame", "request_id"),
        (json!({"id": "x19", "type": "api_response", "status": 200}).to_string(), "invalid_frame", "request_id"),
        (json!({"id": "x20", "type": "stream_event", "request_id": "ar_x", "data": "d"}).to_string(), "invalid_frame", "seq"),
        (json!({"id": "x21", "type": "stream_event", "request_id": "ar_x", "seq": "1"}).to_string(), "invalid_frame", "seq"),
        (json!({"id": "x22", "type": "hello", "client_id": "ff-bad"}).to_string(), "invalid_frame", "hello"),
    ];
    for (text, code, word) in &cases {
        c.send_text(text);
        let err = c.recv_json(FRAME_TIMEOUT).unwrap_or_else(|| panic!("no answer to {text}"));
        assert_eq!(err["type"], "error", "{text} → {err}");
        assert_eq!(err["code"], *code, "{text} → {err}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{text} → {err}");
        assert!(message.contains(word), "message of {text} should name {word:?}: {err}");
        if let Some(id) = serde_json::from_str::<Value>(text).ok().and_then(|v| v.get("id").cloned()) {
            assert_eq!(err["id"], id, "{text} → {err}");
        }
    }
    // Binary frames are not supported, but do not end the connection either.
    c.send_binary(&[1, 2, 3]);
    let err = c.expect_json(FRAME_TIMEOUT);
    assert_eq!(err["type"], "error", "{err}");
    assert_eq!(err["code"], "unsupported_frame", "{err}");
    // Still open and serving: a ping is answered, and a valid frame works.
    c.ping();
    let ack = c.call("ok", json!({"type": "tabs", "tabs": []}));
    assert_eq!(ack["type"], "ack");
    assert_eq!(client_view(&d, "ff-bad").unwrap()["status"], "connected");
    // Nothing was stored by the failed final messages.
    assert_eq!(d.get("/v1/messages").data()["count"], 0);
}

#[test]
fn oversize_frame_closes_with_1009() {
    let d = start(json!({"timed_jobs": {"interval_ms": 3_600_000}, "limits": {"max_ws_frame_bytes": 1024}}));
    let mut c = hello(&d, "ff-big", &[]);
    // Right at the limit is fine.
    let pad = "p".repeat(1024 - json!({"type": "ping", "pad": ""}).to_string().len());
    let at_limit = json!({"type": "ping", "pad": pad}).to_string();
    assert_eq!(at_limit.len(), 1024);
    c.send_text(&at_limit);
    assert_eq!(c.expect_json(FRAME_TIMEOUT)["type"], "pong");
    // One byte over: closed with 1009.
    let over = json!({"type": "ping", "pad": format!("{pad}p")}).to_string();
    assert_eq!(over.len(), 1025);
    let _ = c.try_send_text(&over);
    let (code, _) = c.expect_close(FRAME_TIMEOUT);
    assert_eq!(code, 1009);
    assert!(
        support::wait_until(Duration::from_secs(5), || client_view(&d, "ff-big")
            .is_some_and(|v| v["status"] == "lost")),
        "the client should be marked lost"
    );

    // A raw frame whose header declares 64 KiB is refused the same way.
    let mut c = hello(&d, "ff-big2", &[]);
    let _ = c.send_oversize_text(64 * 1024);
    let (code, _) = c.expect_close(FRAME_TIMEOUT);
    assert_eq!(code, 1009);
}

#[test]
fn broken_framing_closes_1002_and_invalid_utf8_closes_1007() {
    let d = plain();
    // A client frame must be masked: an unmasked one is broken framing.
    let mut c = hello(&d, "ff-frame", &[]);
    let payload = br#"{"type":"ping"}"#;
    let mut unmasked = vec![0x81, payload.len() as u8];
    unmasked.extend_from_slice(payload);
    let _ = c.send_raw(&unmasked);
    assert_eq!(c.expect_close(FRAME_TIMEOUT).0, 1002);
    // A text frame that is not UTF-8.
    let mut c = hello(&d, "ff-utf8", &[]);
    let _ = c.send_raw(&ws::masked_frame(0x1, &[b'"', 0xff, 0xfe, b'"']));
    assert_eq!(c.expect_close(FRAME_TIMEOUT).0, 1007);
    // Raw frames built the same way but valid are served normally.
    let mut c = hello(&d, "ff-raw-ok", &[]);
    c.send_raw(&ws::masked_frame(0x1, payload)).unwrap();
    assert_eq!(c.expect_json(FRAME_TIMEOUT)["type"], "pong");
}

// ---------------------------------------------------------------------------
// Before hello
// ---------------------------------------------------------------------------

#[test]
fn a_first_frame_other_than_hello_gets_not_hello_and_close_1008() {
    let d = plain();
    for first in [
        json!({"type": "ping"}).to_string(),
        json!({"type": "tabs", "tabs": []}).to_string(),
        "garbage".to_string(),
    ] {
        let mut c = connect(&d.ws_url(), &[]);
        c.send_text(&first);
        let err = c.expect_json(FRAME_TIMEOUT);
        assert_eq!(err["type"], "error", "{first}: {err}");
        assert_eq!(err["code"], "not_hello", "{first}: {err}");
        let (code, _) = c.expect_close(FRAME_TIMEOUT);
        assert_eq!(code, 1008, "{first}");
        // The frame was not processed: nobody registered.
        assert_eq!(browser(&d)["clients"], json!([]));
    }
    // A binary first frame is no hello either.
    let mut c = connect(&d.ws_url(), &[]);
    c.send_binary(b"{\"type\":\"hello\",\"client_id\":\"x\"}");
    let err = c.expect_json(FRAME_TIMEOUT);
    assert_eq!(err["code"], "not_hello", "{err}");
    assert_eq!(c.expect_close(FRAME_TIMEOUT).0, 1008);
}

#[test]
fn an_invalid_hello_is_refused_with_1008() {
    let d = plain();
    for hello in [
        json!({"type": "hello"}),
        json!({"type": "hello", "client_id": "has space"}),
        json!({"type": "hello", "client_id": "x".repeat(129)}),
        json!({"type": "hello", "client_id": "ok", "protocol_version": 2}),
        json!({"type": "hello", "client_id": "ok", "platforms": "chatgpt"}),
    ] {
        let mut c = connect(&d.ws_url(), &[]);
        c.send_json(&hello);
        let err = c.expect_json(FRAME_TIMEOUT);
        assert_eq!(err["type"], "error", "{hello}: {err}");
        assert_eq!(err["code"], "invalid_frame", "{hello}: {err}");
        assert_eq!(c.expect_close(FRAME_TIMEOUT).0, 1008, "{hello}");
    }
    assert_eq!(browser(&d)["clients"], json!([]));
}

#[test]
fn silence_before_hello_closes_with_1008_after_hello_timeout() {
    let d = start(json!({"timed_jobs": {"interval_ms": 3_600_000}, "bridge": {"hello_timeout_ms": 300}}));
    let started = Instant::now();
    let mut c = connect(&d.ws_url(), &[]);
    let mut frames = Vec::new();
    let close = loop {
        match c.recv_event(Duration::from_secs(5)) {
            Event::Json(v) => frames.push(v),
            Event::Close(close) => break close,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    let elapsed = started.elapsed();
    assert_eq!(close.expect("close code").0, 1008);
    // The timeout counts from the accept, which is after our connect began.
    assert!(elapsed >= Duration::from_millis(290), "closed after {elapsed:?}, before hello_timeout_ms");
    assert!(elapsed < Duration::from_millis(300 + 2000), "closed only after {elapsed:?}");
    // Any frame before the close is the not_hello error.
    for f in &frames {
        assert_eq!(f["code"], "not_hello", "{f}");
    }
}

// ---------------------------------------------------------------------------
// Upgrade refusals
// ---------------------------------------------------------------------------

#[test]
fn upgrade_refusals_path_origin_token() {
    let d = Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()).token("tok-123"));
    let url = d.ws_url();
    let bearer = ("Authorization", "Bearer tok-123");

    // Token: header or ?token=, wrong or missing → 401.
    assert_eq!(refused_status(&url, &[]), 401);
    assert_eq!(refused_status(&url, &[("Authorization", "Bearer nope")]), 401);
    assert_eq!(refused_status(&ws::url_with_path(&url, "/ws/browser?token=nope"), &[]), 401);
    assert_eq!(refused_status(&ws::url_with_path(&url, "/ws/browser?token="), &[]), 401);
    let mut ok = connect(&url, &[bearer]);
    ok.hello("tok-header", &[]);
    let mut ok = connect(&ws::url_with_path(&url, "/ws/browser?token=tok-123"), &[]);
    ok.hello("tok-query", &[]);
    let mut ok = connect(&ws::url_with_path(&url, "/ws/firefox?x=1&token=tok-123"), &[]);
    ok.hello("tok-query2", &[]);

    // Web origins → 403, even with the token; extension origins pass.
    for origin in ["https://evil.example", "http://localhost:3000", "null"] {
        assert_eq!(refused_status(&url, &[bearer, ("Origin", origin)]), 403, "{origin}");
    }
    for origin in ["moz-extension://abc-123", "chrome-extension://abcdef"] {
        let mut c = connect(&url, &[bearer, ("Origin", origin)]);
        c.hello("ext", &[]);
    }
    // The daemon's own origin is allowed.
    let own = d.base.clone();
    let mut c = connect(&url, &[bearer, ("Origin", own.as_str())]);
    c.hello("own-origin", &[]);

    // Unknown path → 404.
    for path in ["/", "/ws", "/ws/chrome", "/v1/system", "/ws/browser/x"] {
        assert_eq!(refused_status(&ws::url_with_path(&url, path), &[bearer]), 404, "{path}");
    }

    // Order (DECISIONS.md): 404, then 403, then 401.
    assert_eq!(refused_status(&ws::url_with_path(&url, "/nope"), &[("Origin", "https://evil.example")]), 404);
    assert_eq!(refused_status(&url, &[("Origin", "https://evil.example")]), 403);

    // The refusal body is a JSON error naming the code.
    match try_connect(&url, &[]) {
        Err(ws::ConnectError::Refused { status, body }) => {
            assert_eq!(status, 401);
            let v: Value = serde_json::from_str(&body).expect("JSON refusal body");
            assert_eq!(v["error"]["code"], "unauthorized", "{v}");
            assert!(!body.contains("tok-123"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Opens `n` introduced connections.
fn fill(d: &Daemon, n: usize, headers: &[(&str, &str)]) -> Vec<WsClient> {
    (0..n)
        .map(|i| {
            let mut c = connect(&d.ws_url(), headers);
            c.hello(&format!("fill-{i}"), &["chatgpt"]);
            c
        })
        .collect()
}

#[test]
fn sixty_four_clients_are_served_and_the_sixty_fifth_is_refused_503() {
    let d = plain(); // max_ws_clients: default 64
    let mut clients = fill(&d, 64, &[]);
    assert_eq!(d.get("/v1/system").data()["clients"], 64);
    // All 64 are served at once.
    for c in clients.iter_mut() {
        c.ping();
    }
    assert_eq!(refused_status(&d.ws_url(), &[]), 503);
    assert_eq!(refused_status(&d.ws_url(), &[]), 503);
    // The refusal order puts capacity last: a bad path is still a 404.
    assert_eq!(refused_status(&ws::url_with_path(&d.ws_url(), "/x"), &[]), 404);
    // One leaves: its place becomes free again (once its thread ended).
    clients.pop().unwrap().close();
    let mut again = None;
    assert!(
        support::wait_until(Duration::from_secs(5), || {
            match try_connect(&d.ws_url(), &[]) {
                Ok(c) => {
                    again = Some(c);
                    true
                }
                Err(e) => {
                    assert_eq!(e.status(), 503);
                    false
                }
            }
        }),
        "a freed slot should be usable again"
    );
    // (Kept in a binding: a dropped client would free its place again.)
    let mut late = again.unwrap();
    late.hello("late", &[]);
    assert_eq!(refused_status(&d.ws_url(), &[]), 503);
    late.ping();
}

#[test]
fn a_configured_max_ws_clients_is_enforced() {
    let d = Daemon::start(
        DaemonOpts::new()
            .config(json!({"timed_jobs": {"interval_ms": 3_600_000}, "limits": {"max_ws_clients": 3}}))
            .token("tok"),
    );
    let bearer = [("Authorization", "Bearer tok")];
    let mut clients = fill(&d, 3, &bearer);
    assert_eq!(refused_status(&d.ws_url(), &bearer), 503);
    // Token before capacity: without a token it is a 401, not a 503.
    assert_eq!(refused_status(&d.ws_url(), &[]), 401);
    // A place is taken at hello: connections that have not said it yet
    // hold none (they could otherwise lock every plugin out).
    clients.pop().unwrap().close();
    let mut pending = None;
    assert!(support::wait_until(Duration::from_secs(5), || {
        pending = try_connect(&d.ws_url(), &bearer).ok();
        pending.is_some()
    }));
    let mut second = connect(&d.ws_url(), &bearer);
    for c in clients.iter_mut() {
        c.ping();
    }
    // (Kept in a binding: a dropped client would free its place again.)
    let mut late = pending.unwrap();
    late.hello("late", &[]);
    assert_eq!(refused_status(&d.ws_url(), &bearer), 503);
    // The upgrade that raced it past the check is refused at its hello:
    // close 1013 (try again later), and it holds no place.
    second.send_json(&json!({"type": "hello", "client_id": "later"}));
    assert_eq!(second.expect_close(FRAME_TIMEOUT).0, 1013);
    assert_eq!(d.get("/v1/system").data()["clients"], 3);
    late.ping();
}
