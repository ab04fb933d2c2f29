//! The message routes (docs/API.md "Messages"): ingest, read and list, the
//! validation of every field, and the artifact routes that serve a
//! message's raw text and the files under STATE_DIR/artifacts. What an
//! ingest does to conversations and links: `tests/api_ingest_effects.rs`.

use std::fs;

mod api_support;
mod support;

use api_support::*;
use serde_json::{json, Value};
use support::{enc, message_body, now_ms, Daemon, DaemonOpts};

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

#[test]
fn messages_ingest_read_and_list() {
    let d = daemon();
    let before = now_ms();
    let r = d.post_json("/v1/messages", &full_message("msg_1", 1_711_800_000_000));
    assert_json_response(&r);
    let data = r.data();
    assert_keys(&data, &["message", "local_conversation_id", "link_id", "duplicate"]);
    assert_eq!(data["duplicate"], false);
    let lc = data["local_conversation_id"].as_str().unwrap();
    assert!(lc.starts_with("lc_"), "{lc}");
    assert!(data["link_id"].is_string());
    let m = &data["message"];
    assert_keys(m, &with_text(MESSAGE_KEYS));
    assert_eq!(m["message_id"], "msg_1");
    assert_eq!(m["platform"], "chatgpt");
    assert_eq!(m["conversation_id"], "abc");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["raw_text"], "Hello\n  world");
    assert_eq!(m["summary"], "Hello world");
    assert_eq!(m["page_url"], "https://chatgpt.com/c/abc");
    assert_eq!(m["page_title"], "Title");
    assert_eq!(m["tab_id"], 17);
    assert_eq!(m["client_id"], "firefox-main");
    assert_eq!(m["organization_id"], "org-1");
    assert_eq!(m["observed_at"], 1_711_800_000_000i64);
    let created = m["created_at"].as_i64().unwrap();
    assert!(created >= before && created <= now_ms());
    assert_eq!(m["artifact_url"], format!("{}/artifact/msg/msg_1.txt", d.base));

    // Read: the same object, raw_text included.
    let read = d.get("/v1/messages/msg_1").data();
    assert_eq!(&read, m);

    // List: the same object without raw_text.
    let list = d.get("/v1/messages").data();
    assert_eq!(list["count"], 1);
    let item = &list["messages"][0];
    assert_keys(item, MESSAGE_KEYS);
    let mut expected = m.clone();
    expected.as_object_mut().unwrap().remove("raw_text");
    assert_eq!(item, &expected);

    // A minimal message: defaults and explicit nulls.
    let data = ingest(&d, &message_body("claude", "c9", "msg_2", "short"));
    let m = &data["message"];
    assert_eq!(m["role"], "assistant");
    let observed = m["observed_at"].as_i64().unwrap();
    assert!(observed >= before && observed <= now_ms(), "observed_at defaults to now");
    for field in ["page_url", "page_title", "tab_id", "client_id", "organization_id"] {
        assert_eq!(m.get(field), Some(&Value::Null), "{field} present as null");
    }
    // An empty text is fine for a non-assistant message; raw_text is "" then.
    let mut user = message_body("claude", "c9", "msg_3", "");
    user["role"] = json!("user");
    let data = ingest(&d, &user);
    assert_eq!(data["message"]["raw_text"], "");
    assert_eq!(d.get("/v1/messages/msg_3").data()["raw_text"], "");
}

#[test]
fn messages_read_unknown_is_404() {
    let d = daemon();
    let e = d.get("/v1/messages/nope").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "message");
    assert_eq!(e["details"]["resource_id"], "nope");
    let e = d.get("/v1/messages/a%20b").error(404, "not_found");
    assert_eq!(e["details"]["resource_id"], "a b", "the id is reported decoded");
}

#[test]
fn duplicate_ingest_is_a_no_op() {
    let d = daemon();
    let first = ingest(&d, &full_message("msg_1", 1000));
    let mut again = full_message("msg_1", 2000);
    again["text"] = json!("a different text");
    again["tab_id"] = json!(99);
    let second = ingest(&d, &again);
    assert_eq!(second["duplicate"], true);
    assert_eq!(second["local_conversation_id"], first["local_conversation_id"]);
    assert_eq!(second["link_id"], first["link_id"]);
    assert_eq!(second["message"], first["message"], "the stored message is unchanged");
    assert_eq!(d.get("/v1/messages/msg_1").data()["raw_text"], "Hello\n  world");
    let system = d.get("/v1/system").data();
    assert_eq!(system["counts"]["messages"], 1);
    assert_eq!(system["counts"]["conversations"], 1);
    let links = d.get("/v1/renewal/links").data();
    assert_eq!(links["count"], 1, "no link for the duplicate's tab: {links}");
    let conv = conversation(&d, first["local_conversation_id"].as_str().unwrap());
    assert_eq!(conv["repeated_message_count"], 1, "a duplicate does not count as a repeat");
}

#[test]
fn ingest_validation_names_the_field() {
    let d = daemon();
    let base = message_body("chatgpt", "c", "m", "hi");
    let cases: Vec<(&str, Value)> = vec![
        ("platform", json!("Bad Platform")),
        ("platform", json!("x".repeat(33))),
        ("platform", json!(7)),
        ("platform", Value::Null),
        ("conversation_id", json!("")),
        ("conversation_id", json!(["c"])),
        ("message_id", Value::Null),
        ("message_id", json!(12)),
        ("text", json!(1)),
        ("text", json!("")),
        ("text", Value::Null),
        ("role", json!("Assistant")),
        ("role", json!(true)),
        ("observed_at", json!("now")),
        ("observed_at", json!(-1)),
        ("observed_at", json!(1.5)),
        // Past the end of tomorrow (UTC), so at least a day ahead: it would
        // stay the conversation's newest message for good and stop its renewal.
        ("observed_at", json!(now_ms() + 49 * 3600 * 1000)),
        ("observed_at", json!(i64::MAX)),
        ("tab_id", json!(0)),
        ("tab_id", json!("17")),
        ("shell_page", json!("yes")),
        ("client_id", json!("has space")),
        ("client_id", json!(5)),
        ("page_url", json!(5)),
        ("page_title", json!({})),
        ("organization_id", json!(1)),
        ("route", json!("x")),
    ];
    for (field, value) in cases {
        let mut body = base.clone();
        body[field] = value.clone();
        let r = d.post_json("/v1/messages", &body);
        assert_json_response(&r);
        let e = r.error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field, "{field} = {value}: {e}");
    }
    let mut body = base.clone();
    body["route"] = json!({"params": []});
    let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "route.params");
    body["route"] = json!({"path": 5});
    let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "route.path");
    assert!(e["message"].as_str().unwrap().contains("\"route.path\""), "{e}");
    // Whitespace is not empty: stored as the page showed it.
    let mut body = base.clone();
    body["text"] = json!("  \n ");
    body["message_id"] = json!("blank");
    assert_eq!(d.post_json("/v1/messages", &body).status, 200);
    assert_eq!(d.get("/v1/messages/blank").data()["raw_text"], "  \n ");
    // A plugin's clock a little ahead is fine.
    let mut body = base.clone();
    body["observed_at"] = json!(now_ms() + 3600 * 1000);
    body["message_id"] = json!("ahead");
    assert_eq!(d.post_json("/v1/messages", &body).status, 200);
    // Missing required fields.
    for field in ["platform", "conversation_id", "message_id", "text"] {
        let mut body = base.clone();
        body.as_object_mut().unwrap().remove(field);
        let e = d.post_json("/v1/messages", &body).error(400, "invalid_request");
        assert_eq!(e["details"]["field"], field);
    }
    // Not an object / not JSON: no field to name.
    for bad in [&b"[1,2]"[..], b"\"text\"", b"{\"platform\":", b"nul"] {
        let r = d.request("POST", "/v1/messages", &[("Content-Type", "application/json")], Some(bad));
        assert_eq!(r.error(400, "invalid_request")["details"]["field"], Value::Null);
    }
    // An empty body is an empty object: the first required field is missing.
    let e = d.post_empty("/v1/messages").error(400, "invalid_request");
    assert_eq!(e["details"]["field"], "platform");
    // Nothing was stored by any of these (only the blank one and the one
    // an hour ahead).
    assert_eq!(d.get("/v1/system").data()["counts"]["messages"], 2);
}

/// `JSON.stringify` of text cut in the middle of an emoji writes half a
/// surrogate pair as a lone `\ud83d` escape. The message is kept, with
/// U+FFFD in place of the half, over HTTP and over the WebSocket alike.
#[test]
fn half_an_emoji_does_not_lose_the_message() {
    let d = daemon();
    let body = br#"{"platform":"chatgpt","conversation_id":"c","message_id":"emoji","text":"Here you go \ud83d","page_title":"\ude00 ok \ud83d\ude00"}"#;
    let r = d.request("POST", "/v1/messages", &[("Content-Type", "application/json")], Some(&body[..]));
    assert_eq!(r.status, 200, "{}", r.text());
    let m = d.get("/v1/messages/emoji").data();
    assert_eq!(m["raw_text"], "Here you go \u{fffd}");
    assert_eq!(m["page_title"], "\u{fffd} ok 😀");

    let mut c = support::bridge::hello(&d, "ff-emoji", &["chatgpt"]);
    c.send_text(r#"{"type":"browser.final_message","id":"s1","platform":"chatgpt","conversation_id":"c","message_id":"emoji-ws","text":"cut \ud83d"}"#);
    let ack = c.recv_type("ack", support::ws::FRAME_TIMEOUT);
    assert_eq!((ack["id"].as_str(), ack["duplicate"].as_bool()), (Some("s1"), Some(false)), "{ack}");
    assert_eq!(d.get("/v1/messages/emoji-ws").data()["raw_text"], "cut \u{fffd}");
}

#[test]
fn message_ids_with_any_characters_round_trip() {
    let d = daemon();
    let id = "a b/c?d#e%f.txt+ü";
    let data = ingest(&d, &message_body("chatgpt", "conv/1 ?", id, "Grüße\nline two"));
    assert_eq!(data["message"]["message_id"], id);
    let read = d.get(&format!("/v1/messages/{}", enc(id))).data();
    assert_eq!(read["message_id"], id);
    assert_eq!(read["conversation_id"], "conv/1 ?");
    // The artifact URL is a working link to the raw text.
    let url = read["artifact_url"].as_str().unwrap();
    let path = url.strip_prefix(&d.base).expect("artifact_url on the daemon's base");
    let r = d.get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(r.text(), "Grüße\nline two");
    // Filters take such values too.
    let list = d.get(&format!("/v1/messages?conversation_id={}", enc("conv/1 ?"))).data();
    assert_eq!(list["count"], 1);
}

#[test]
fn artifact_url_uses_public_base_url() {
    let d = Daemon::start(DaemonOpts::new().config(json!({"public_base_url": "https://baa.example/base/"})));
    let data = ingest(&d, &message_body("chatgpt", "c", "m1", "x"));
    assert_eq!(data["message"]["artifact_url"], "https://baa.example/base/artifact/msg/m1.txt");
}

// ---------------------------------------------------------------------------
// Artifacts
// ---------------------------------------------------------------------------

#[test]
fn artifact_message_is_the_raw_text() {
    let d = daemon();
    let text = "Line one\n\n  indented ✓\r\nend";
    ingest(&d, &message_body("chatgpt", "c", "m.1", text));
    let r = d.get("/artifact/msg/m.1.txt");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("x-request-id").is_some());
    // Text taken from a web page is never active content on our origin.
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("content-security-policy"), Some("default-src 'none'; sandbox"));
    assert_eq!(r.text(), text);

    let r = d.get("/artifact/msg/nope.txt");
    assert_json_response(&r);
    let e = r.error(404, "not_found");
    assert_eq!(e["details"]["resource"], "message");
    assert_eq!(e["details"]["resource_id"], "nope");
}

#[test]
fn artifact_files_are_served_only_from_the_artifacts_dir() {
    let d = daemon();
    let state = d.state_dir().to_path_buf();
    let artifacts = state.join("artifacts");
    fs::create_dir_all(artifacts.join("sub")).unwrap();
    fs::write(artifacts.join("sub/report.txt"), "report body").unwrap();
    fs::write(artifacts.join("data.json"), "{\"a\":1}").unwrap();
    fs::write(state.join("secret.txt"), "TOP-SECRET").unwrap();
    fs::create_dir_all(d.temp_dir().join("outside")).unwrap();
    fs::write(d.temp_dir().join("outside/x.txt"), "TOP-SECRET").unwrap();

    let r = d.get("/artifact/sub/report.txt");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "report body");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = d.get("/artifact/data.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "{\"a\":1}");
    let r = d.get("/artifact/sub/%72eport.txt");
    assert_eq!(r.status, 200, "percent-encoded names are decoded");

    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink("../secret.txt", artifacts.join("up.txt")).unwrap();
        symlink(&state, artifacts.join("statedir")).unwrap();
        symlink(d.temp_dir().join("outside"), artifacts.join("out")).unwrap();
        symlink("/etc/hostname", artifacts.join("abs.txt")).unwrap();
        symlink("sub/report.txt", artifacts.join("inside.txt")).unwrap();
        let r = d.get("/artifact/inside.txt");
        assert_eq!(r.status, 200, "a link that stays inside is fine");
        assert_eq!(r.text(), "report body");
    }

    let secret_abs = state.join("secret.txt").display().to_string();
    let escapes = [
        "/artifact/../secret.txt".to_string(),
        "/artifact/sub/../../secret.txt".to_string(),
        "/artifact/%2e%2e/secret.txt".to_string(),
        "/artifact/%2E%2E/%2E%2E/outside/x.txt".to_string(),
        "/artifact/%2e%2e%2fsecret.txt".to_string(),
        "/artifact/..%2Fsecret.txt".to_string(),
        "/artifact/sub/..%2f..%2fsecret.txt".to_string(),
        "/artifact/..%5csecret.txt".to_string(),
        "/artifact/.%2e/secret.txt".to_string(),
        "/artifact//etc/passwd".to_string(),
        "/artifact/%2Fetc%2Fpasswd".to_string(),
        format!("/artifact/{}", enc(&secret_abs)),
        format!("/artifact/{}", secret_abs.trim_start_matches('/')),
        "/artifact/./sub/report.txt".to_string(),
        "/artifact/sub".to_string(),
        "/artifact/missing.txt".to_string(),
        "/artifact/up.txt".to_string(),
        "/artifact/statedir/secret.txt".to_string(),
        "/artifact/statedir/conductor.db".to_string(),
        "/artifact/out/x.txt".to_string(),
        "/artifact/abs.txt".to_string(),
        "/artifact/sub%00/report.txt".to_string(),
    ];
    for path in &escapes {
        let r = d.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_json_response(&r);
        let e = r.error(404, "not_found");
        assert!(!r.text().contains("TOP-SECRET"), "{path}");
        if let Some(resource) = e["details"].get("resource") {
            assert_eq!(resource, "artifact", "{path}");
            assert!(e["details"]["resource_id"].is_string(), "{path}");
        }
    }
    let e = d.get("/artifact/missing.txt").error(404, "not_found");
    assert_eq!(e["details"]["resource"], "artifact");
    assert_eq!(e["details"]["resource_id"], "missing.txt");
}
