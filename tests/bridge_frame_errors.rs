//! What the plugin bridge (docs/BRIDGE.md "Errors that keep the
//! connection open", "Close codes") does with bad frames, with a real
//! WebSocket client against the real daemon: after `hello`, an `error`
//! frame and the connection stays open, or a close (oversize, broken
//! framing, invalid UTF-8); before `hello`, a close with 1008 (another
//! frame first, an invalid `hello`, silence).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bridge::{browser, client_view, hello};
use support::ws::{self, connect, Event, FRAME_TIMEOUT};
use support::{quiet_timed_jobs, Daemon, DaemonOpts};

fn start(config: Value) -> Daemon {
    Daemon::start(DaemonOpts::new().config(config))
}

fn plain() -> Daemon {
    start(quiet_timed_jobs())
}

// ---------------------------------------------------------------------------
// After hello: an error frame, and the connection stays open
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
