//! The frames the simulator sends of its own accord (docs/BRIDGE.md
//! "Plugin → daemon"): pure functions of the options, so they are easy to
//! check without a socket.

use crate::cli::{Options, Tab};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

/// `id` of the final message, echoed by the daemon in the `ack`/`error`
/// that answers it; `--exit-after-message` waits for exactly this id.
pub const FINAL_MESSAGE_ID: &str = "sim-f-1";
pub const TABS_ID: &str = "sim-tabs-1";

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Serializes a frame with `type` first. serde_json (without its
/// `preserve_order` feature) sorts keys, which would put `type` last and
/// make the transcript hard to scan; the wire format does not care.
pub fn to_wire(frame: &Value) -> String {
    let Some(map) = frame.as_object() else {
        return frame.to_string();
    };
    let Some(kind) = map.get("type") else {
        return frame.to_string();
    };
    let mut text = format!("{{\"type\":{kind}");
    for (key, value) in map.iter().filter(|(k, _)| *k != "type") {
        text.push(',');
        text.push_str(&Value::String(key.clone()).to_string());
        text.push(':');
        text.push_str(&value.to_string());
    }
    text.push('}');
    text
}

pub fn hello(opts: &Options) -> Value {
    json!({
        "type": "hello",
        "client_id": opts.client_id,
        "browser": "simulator",
        "version": env!("CARGO_PKG_VERSION"),
        "platforms": opts.platforms,
        "protocol_version": 1,
    })
}

pub fn tabs(tabs: &[Tab]) -> Value {
    let list: Vec<Value> = tabs.iter().map(tab).collect();
    json!({"type": "tabs", "id": TABS_ID, "tabs": list})
}

fn tab(t: &Tab) -> Value {
    let conversation = t.conversation_id.as_deref();
    json!({
        "tab_id": t.tab_id,
        "platform": t.platform,
        "url": page_url(&t.platform, conversation),
        "title": "Simulated",
        "conversation_id": conversation,
    })
}

/// Metadata only, like the real plugin: never headers, cookies or tokens.
pub fn login_state(platform: &str) -> Value {
    json!({
        "type": "login_state",
        "id": format!("sim-login-{platform}"),
        "platform": platform,
        "captured_at": now_ms(),
        "fingerprint": "sha256:sim",
        "account": {"email_hint": "s***@example.com"},
    })
}

pub fn final_message(opts: &Options, text: &str) -> Value {
    let conv = &opts.conversation;
    let platform = opts.first_platform();
    let message_id = opts.message_id.clone().unwrap_or_else(|| format!("sim-{}", now_ms()));
    let mut frame = json!({
        "type": "browser.final_message",
        "id": FINAL_MESSAGE_ID,
        "platform": platform,
        "conversation_id": conv,
        "message_id": message_id,
        "role": "assistant",
        "text": text,
        "observed_at": now_ms(),
        "page_url": page_url(platform, Some(conv)),
        "page_title": "Simulated",
        "tab_id": opts.tab_id,
        "route": {
            "path": format!("/c/{conv}"),
            "pattern": "/c/:conversationId",
            "params": {"conversationId": conv},
        },
        "shell_page": false,
    });
    // "Without `tab_id`" (docs/BRIDGE.md): leave the key out rather than send null.
    if opts.tab_id.is_none() {
        frame.as_object_mut().map(|o| o.remove("tab_id"));
    }
    frame
}

/// ChatGPT-style `/c/<id>` URLs; the origin follows the platform so that a
/// simulated Claude tab does not claim to be on chatgpt.com.
pub fn page_url(platform: &str, conversation: Option<&str>) -> String {
    let origin = match platform {
        "chatgpt" => "https://chatgpt.com".to_string(),
        "claude" => "https://claude.ai".to_string(),
        "gemini" => "https://gemini.google.com".to_string(),
        other => format!("https://{other}.invalid"),
    };
    match conversation {
        Some(c) => format!("{origin}/c/{c}"),
        None => format!("{origin}/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse, Parsed};

    fn opts(args: &[&str]) -> Options {
        match parse(args.iter().map(|s| s.to_string())).unwrap() {
            Parsed::Run(o) => *o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn wire_puts_type_first() {
        let v = json!({"b": 1, "type": "x", "a": {"k": "v\"q"}});
        let text = to_wire(&v);
        assert_eq!(text, r#"{"type":"x","a":{"k":"v\"q"},"b":1}"#);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }

    #[test]
    fn hello_lists_platforms() {
        let h = hello(&opts(&["--platform", "claude", "--platform", "gemini"]));
        assert_eq!(h["platforms"], json!(["claude", "gemini"]));
        assert_eq!(h["browser"], "simulator");
        assert_eq!(h["protocol_version"], 1);
    }

    #[test]
    fn final_message_defaults() {
        let o = opts(&["--message", "hi"]);
        let m = final_message(&o, "hi");
        assert_eq!(m["page_url"], "https://chatgpt.com/c/sim-conv");
        assert_eq!(m["route"]["params"]["conversationId"], "sim-conv");
        assert_eq!(m["tab_id"], 17);
        assert!(m["message_id"].as_str().unwrap().starts_with("sim-"));
    }

    #[test]
    fn final_message_without_tab() {
        let o = opts(&["--message", "hi", "--tab-id", "none"]);
        assert!(final_message(&o, "hi").get("tab_id").is_none());
    }

    #[test]
    fn tab_without_conversation() {
        let t = tabs(&opts(&["--tab", "4:claude"]).tabs);
        assert_eq!(t["tabs"][0]["url"], "https://claude.ai/");
        assert_eq!(t["tabs"][0]["conversation_id"], Value::Null);
    }
}
