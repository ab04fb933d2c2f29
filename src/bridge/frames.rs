//! The wire shapes of the plugin protocol (docs/BRIDGE.md): validation
//! of `hello`, `tabs` and `login_state`, the credential scrub, and the
//! builders of the frames the daemon sends. Kept apart from the connection
//! loop so every rule is unit-tested on plain JSON.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::final_message::{valid_platform, valid_token_id, FieldError};
use super::hub::{Hello, LoginState, Tab};
use crate::util::now_ms;

pub const PROTOCOL_VERSION: i64 = 1;

/// Tabs kept per client: the first ones of a `tabs` frame, as many as fit
/// in both bounds (docs/BRIDGE.md "Bounds"). Every client's tabs are in
/// `GET /v1/browser`, so these bound that answer's size with the number of
/// clients kept.
pub const MAX_TABS: usize = 200;
/// What the kept tabs may take when shown, at most (`shown_bytes`).
pub const MAX_TABS_BYTES: usize = 128 * 1024;
/// A login state's `account`, as JSON text, at most.
pub const MAX_ACCOUNT_BYTES: usize = 1024;

/// A `tabs` frame's list as kept: its first tabs, within `MAX_TABS` and
/// `MAX_TABS_BYTES`, and how many of the rest were left out (not read).
#[derive(Debug)]
pub struct TabList {
    pub tabs: Vec<Tab>,
    pub dropped: usize,
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

fn opt_string(obj: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(err(key, format!("Field \"{key}\" must be at most {max} bytes."))),
        Some(_) => Err(err(key, format!("Field \"{key}\" must be a string."))),
    }
}

/// The optional client frame `id` (1–128 chars) echoed in the answer.
pub fn frame_id(obj: &Map<String, Value>) -> Result<Option<String>, FieldError> {
    match obj.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if (1..=128).contains(&s.chars().count()) => Ok(Some(s.clone())),
        Some(_) => Err(err("id", "Field \"id\" must be a string of 1 to 128 characters.")),
    }
}

pub fn parse_hello(obj: &Map<String, Value>) -> Result<Hello, FieldError> {
    let client_id = opt_string(obj, "client_id", 128)?
        .ok_or_else(|| err("client_id", "Field \"client_id\" is required."))?;
    if !valid_token_id(&client_id) {
        return Err(err("client_id", "Field \"client_id\" must match [A-Za-z0-9._:-]{1,128}."));
    }
    match obj.get("protocol_version") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(PROTOCOL_VERSION) => {}
        Some(_) => return Err(err("protocol_version", "Field \"protocol_version\" must be 1.")),
    }
    let platforms = match obj.get("platforms") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= 64 => items
            .iter()
            .map(|p| p.as_str().filter(|p| valid_platform(p)).map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                err("platforms", "Field \"platforms\" must list platforms matching [a-z0-9_-]{1,32}.")
            })?,
        Some(_) => {
            return Err(err("platforms", "Field \"platforms\" must be an array of at most 64 platforms."))
        }
    };
    Ok(Hello {
        client_id,
        browser: opt_string(obj, "browser", 64)?,
        version: opt_string(obj, "version", 64)?,
        platforms,
    })
}

/// The tabs of a `tabs` frame, the first ones that fit the bounds; a bad
/// tab among those refuses the frame, the ones left out are not read.
pub fn parse_tabs(obj: &Map<String, Value>) -> Result<TabList, FieldError> {
    let Some(Value::Array(items)) = obj.get("tabs") else {
        return Err(err("tabs", "Field \"tabs\" must be an array."));
    };
    let (mut tabs, mut bytes) = (Vec::new(), 0);
    for (i, item) in items.iter().enumerate().take(MAX_TABS) {
        let tab = parse_tab(i, item)?;
        bytes += shown_bytes(&tab);
        if bytes > MAX_TABS_BYTES {
            break;
        }
        tabs.push(tab);
    }
    Ok(TabList { dropped: items.len() - tabs.len(), tabs })
}

/// What a tab takes in `GET /v1/browser` at most: its strings as JSON
/// (escapes included) and room for the keys, the id and the punctuation.
fn shown_bytes(tab: &Tab) -> usize {
    let text =
        |s: &Option<String>| s.as_deref().map_or(4, |s| serde_json::to_string(s).map_or(0, |j| j.len()));
    96 + tab.platform.len() + text(&tab.url) + text(&tab.title) + text(&tab.conversation_id)
}

fn parse_tab(i: usize, item: &Value) -> Result<Tab, FieldError> {
    let field = |name: &str| format!("tabs[{i}].{name}");
    let obj = item.as_object().ok_or_else(|| err(&format!("tabs[{i}]"), "Each tab must be an object."))?;
    let tab_id = obj.get("tab_id").and_then(Value::as_i64).filter(|t| *t > 0);
    let tab_id =
        tab_id.ok_or_else(|| err(&field("tab_id"), "Field \"tab_id\" must be a positive integer."))?;
    let platform = obj.get("platform").and_then(Value::as_str).filter(|p| valid_platform(p));
    let platform =
        platform.ok_or_else(|| err(&field("platform"), "Field \"platform\" must match [a-z0-9_-]{1,32}."))?;
    let named = |key: &str, max| opt_string(obj, key, max).map_err(|e| err(&field(key), e.message));
    Ok(Tab {
        tab_id,
        platform: platform.to_string(),
        url: named("url", 8192)?,
        title: named("title", 2048)?,
        conversation_id: named("conversation_id", 512)?,
    })
}

/// Keys whose values are credential material. They are dropped wherever
/// they appear, before anything is stored or logged.
const CREDENTIAL_KEYS: &[&str] = &[
    "headers",
    "cookies",
    "cookie",
    "set-cookie",
    "token",
    "authorization",
    "access_token",
    "refresh_token",
    "session_token",
    "id_token",
    "password",
    "api_key",
    "apikey",
    "secret",
];

fn is_credential_key(key: &str) -> bool {
    CREDENTIAL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Removes credential keys at any depth; returns the dropped key names in
/// the order first seen, each once.
pub fn scrub_credentials(value: &mut Value, dropped: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().filter(|k| is_credential_key(k)).cloned().collect();
            for key in keys {
                map.remove(&key);
                if !dropped.contains(&key) {
                    dropped.push(key);
                }
            }
            map.values_mut().for_each(|v| scrub_credentials(v, dropped));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_credentials(v, dropped)),
        _ => {}
    }
}

/// Parses a `login_state` frame that has already been scrubbed.
pub fn parse_login_state(obj: &Map<String, Value>) -> Result<LoginState, FieldError> {
    let platform = obj.get("platform").and_then(Value::as_str).filter(|p| valid_platform(p));
    let platform =
        platform.ok_or_else(|| err("platform", "Field \"platform\" must match [a-z0-9_-]{1,32}."))?;
    let captured_at = match obj.get("captured_at") {
        None | Some(Value::Null) => now_ms(),
        Some(v) => v
            .as_i64()
            .filter(|t| *t >= 0)
            .ok_or_else(|| err("captured_at", "Field \"captured_at\" must be an integer (ms)."))?,
    };
    let account = match obj.get("account") {
        None | Some(Value::Null) => Value::Null,
        Some(v @ Value::Object(_)) if v.to_string().len() <= MAX_ACCOUNT_BYTES => v.clone(),
        Some(Value::Object(_)) => {
            let message = format!("Field \"account\" must be at most {MAX_ACCOUNT_BYTES} bytes as JSON.");
            return Err(err("account", message));
        }
        Some(_) => return Err(err("account", "Field \"account\" must be an object.")),
    };
    Ok(LoginState {
        platform: platform.to_string(),
        captured_at,
        fingerprint: opt_string(obj, "fingerprint", 256)?,
        account,
    })
}

pub fn hello_ack(connection_id: &str, heartbeat_ms: u64) -> String {
    json!({
        "type": "hello_ack", "connection_id": connection_id, "protocol_version": PROTOCOL_VERSION,
        "server_time": now_ms(), "heartbeat_ms": heartbeat_ms,
    })
    .to_string()
}

pub fn error(id: Option<&str>, code: &str, message: &str) -> String {
    json!({ "type": "error", "id": id, "code": code, "message": message }).to_string()
}

pub fn ack(id: Option<&str>, extra: Value) -> String {
    let mut frame = json!({ "type": "ack", "id": id });
    if let (Value::Object(f), Value::Object(e)) = (&mut frame, extra) {
        f.extend(e);
    }
    frame.to_string()
}

pub fn pong() -> String {
    json!({ "type": "pong", "server_time": now_ms() }).to_string()
}

/// What a `proxy_delivery` frame carries (docs/BRIDGE.md), in the
/// dispatcher's terms; `proxy_delivery` turns it into the frame.
pub struct ProxyDelivery<'a> {
    pub platform: &'a str,
    pub tab_id: i64,
    pub conversation_id: &'a str,
    pub organization_id: &'a Value,
    pub page_url: Option<&'a str>,
    pub page_title: Option<&'a str>,
    pub message_text: &'a str,
    pub assistant_message_id: &'a str,
    pub plan_id: String,
    pub timeout_ms: u64,
    pub local_conversation_id: &'a str,
}

/// docs/BRIDGE.md `plan_id`: `renewal_` + the message id lower-cased
/// with every character outside `[a-z0-9-]` turned into `-`, + `_` + the
/// attempt's time in ms. (A plugin may use it in a DOM id or a file name;
/// `Msg_Two/Y` must not reach it raw.)
pub fn plan_id(message_id: &str, at_ms: i64) -> String {
    let slug: String = message_id
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' { c } else { '-' })
        .collect();
    format!("renewal_{slug}_{at_ms}")
}

/// The `proxy_delivery` frame, written straight from the borrowed fields
/// (one per renewal delivery, on the dispatcher's path: no `Value` tree).
/// Fields in the order a `json!` map keeps them, sorted, as every other frame.
#[derive(Serialize)]
struct ProxyDeliveryFrame<'a> {
    assistant_message_id: &'a str,
    conversation_id: &'a str,
    local_conversation_id: &'a str,
    message_text: &'a str,
    organization_id: &'a Value,
    page_title: Option<&'a str>,
    page_url: Option<&'a str>,
    plan_id: &'a str,
    platform: &'a str,
    request_id: &'a str,
    shell_page: bool,
    tab_id: i64,
    timeout_ms: u64,
    #[serde(rename = "type")]
    kind: &'static str,
}

pub fn proxy_delivery(request_id: &str, d: &ProxyDelivery<'_>) -> String {
    let frame = ProxyDeliveryFrame {
        assistant_message_id: d.assistant_message_id,
        conversation_id: d.conversation_id,
        local_conversation_id: d.local_conversation_id,
        message_text: d.message_text,
        organization_id: d.organization_id,
        page_title: d.page_title,
        page_url: d.page_url,
        plan_id: &d.plan_id,
        platform: d.platform,
        request_id,
        shell_page: false,
        tab_id: d.tab_id,
        timeout_ms: d.timeout_ms,
        kind: "proxy_delivery",
    };
    serde_json::to_string(&frame).expect("strings, numbers and a JSON value always serialise")
}

/// docs/BRIDGE.md `action_result`: success iff accepted, not failed,
/// and `http_status` absent or 2xx; otherwise the reason, else
/// `upstream_http_<status>`, else `delivery_failed`.
pub fn delivery_verdict(frame: &Value) -> Result<(), String> {
    let accepted = frame.get("accepted").and_then(Value::as_bool).unwrap_or(false);
    let failed = frame.get("failed").and_then(Value::as_bool).unwrap_or(false);
    let status = frame.get("http_status").and_then(Value::as_i64);
    if accepted && !failed && status.is_none_or(|s| (200..300).contains(&s)) {
        return Ok(());
    }
    if let Some(reason) = frame.get("reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        return Err(reason.to_string());
    }
    match status {
        Some(s) if !(200..300).contains(&s) => Err(format!("upstream_http_{s}")),
        _ => Err("delivery_failed".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame written from a struct is the one a `json!` map gives,
    /// byte for byte.
    #[test]
    fn a_proxy_delivery_frame_is_the_json_map_of_its_fields() {
        let d = ProxyDelivery {
            platform: "claude",
            tab_id: 7,
            conversation_id: "c-1",
            organization_id: &json!("org \"x\""),
            page_url: Some("https://claude.ai/chat/c-1"),
            page_title: None,
            message_text: "line one\nline \u{1F600}",
            assistant_message_id: "m-1",
            plan_id: "renewal_m-1_5".into(),
            timeout_ms: 30000,
            local_conversation_id: "lc_1",
        };
        let expected = json!({
            "type": "proxy_delivery", "request_id": "pd_1", "platform": d.platform,
            "tab_id": d.tab_id, "conversation_id": d.conversation_id,
            "organization_id": d.organization_id, "page_url": d.page_url, "page_title": d.page_title,
            "message_text": d.message_text, "assistant_message_id": d.assistant_message_id,
            "plan_id": d.plan_id, "timeout_ms": d.timeout_ms, "shell_page": false,
            "local_conversation_id": d.local_conversation_id,
        });
        assert_eq!(proxy_delivery("pd_1", &d), expected.to_string());
    }

    #[test]
    fn plan_ids_are_normalised() {
        assert_eq!(plan_id("msg-1", 5), "renewal_msg-1_5");
        assert_eq!(plan_id("Msg_Two/Y", 17), "renewal_msg-two-y_17");
        assert_eq!(plan_id("ÄB c", 1), "renewal_-b-c_1");
    }

    #[test]
    fn verdicts() {
        assert_eq!(delivery_verdict(&json!({"accepted":true,"failed":false})), Ok(()));
        assert_eq!(delivery_verdict(&json!({"accepted":true,"failed":false,"http_status":201})), Ok(()));
        assert_eq!(
            delivery_verdict(&json!({"accepted":true,"failed":true,"reason":"tab_closed"})),
            Err("tab_closed".into())
        );
        assert_eq!(
            delivery_verdict(&json!({"accepted":true,"failed":false,"http_status":429})),
            Err("upstream_http_429".into())
        );
        assert_eq!(delivery_verdict(&json!({"accepted":false})), Err("delivery_failed".into()));
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn hello_rules() {
        let h = parse_hello(&obj(json!({"client_id":"ff-1","platforms":["chatgpt"],"protocol_version":1})))
            .unwrap();
        assert_eq!(h.platforms, vec!["chatgpt"]);
        assert_eq!(parse_hello(&obj(json!({}))).unwrap_err().field, "client_id");
        assert_eq!(parse_hello(&obj(json!({"client_id":"a b"}))).unwrap_err().field, "client_id");
        assert_eq!(
            parse_hello(&obj(json!({"client_id":"a","protocol_version":2}))).unwrap_err().field,
            "protocol_version"
        );
        assert_eq!(
            parse_hello(&obj(json!({"client_id":"a","platforms":["Bad"]}))).unwrap_err().field,
            "platforms"
        );
    }

    #[test]
    fn tabs_name_the_bad_field() {
        let ok = parse_tabs(&obj(json!({"tabs":[{"tab_id":1,"platform":"claude","url":"u"}]}))).unwrap();
        assert_eq!((ok.tabs[0].tab_id, ok.dropped), (1, 0));
        assert_eq!(parse_tabs(&obj(json!({"tabs":{}}))).unwrap_err().field, "tabs");
        assert_eq!(
            parse_tabs(&obj(json!({"tabs":[{"tab_id":0,"platform":"x"}]}))).unwrap_err().field,
            "tabs[0].tab_id"
        );
        assert_eq!(
            parse_tabs(&obj(json!({"tabs":[{"tab_id":1,"platform":"x","title":5}]}))).unwrap_err().field,
            "tabs[0].title"
        );
    }

    #[test]
    fn a_tab_list_keeps_its_first_tabs_within_both_bounds() {
        let tab = |i: usize, url: &str| json!({"tab_id": i + 1, "platform": "claude", "url": url});
        let many: Vec<Value> = (0..MAX_TABS + 50).map(|i| tab(i, "u")).collect();
        let kept = parse_tabs(&obj(json!({ "tabs": many }))).unwrap();
        assert_eq!((kept.tabs.len(), kept.dropped), (MAX_TABS, 50));
        assert_eq!(kept.tabs.last().unwrap().tab_id, MAX_TABS as i64, "the first ones are kept");
        // 8 KiB URLs: the byte bound comes first; a bad tab past it is not read.
        let url = "u".repeat(8 * 1024);
        let mut big: Vec<Value> = (0..40).map(|i| tab(i, &url)).collect();
        big.push(json!({"tab_id": 0}));
        let kept = parse_tabs(&obj(json!({ "tabs": big }))).unwrap();
        // Each: 96 + "claude" + the URL's 8 KiB and quotes + two nulls.
        assert_eq!(kept.tabs.len(), MAX_TABS_BYTES / (96 + 6 + 8 * 1024 + 2 + 8));
        assert_eq!(kept.tabs.len() + kept.dropped, 41);
        assert!(kept.tabs.iter().map(shown_bytes).sum::<usize>() <= MAX_TABS_BYTES);
        // Escapes count as shown: a title of control characters is 6 times its size.
        let odd = parse_tabs(&obj(json!({"tabs": [{"tab_id": 1, "platform": "p", "title": "\u{1}"}]})));
        assert_eq!(shown_bytes(&odd.unwrap().tabs[0]), 96 + 1 + 4 + "\"\\u0001\"".len() + 4);
    }

    #[test]
    fn an_account_is_bounded() {
        let login =
            |account: Value| parse_login_state(&obj(json!({"platform": "claude", "account": account})));
        assert!(login(json!({"email_hint": "a".repeat(MAX_ACCOUNT_BYTES - 20)})).is_ok());
        assert_eq!(login(json!({"email_hint": "a".repeat(MAX_ACCOUNT_BYTES)})).unwrap_err().field, "account");
    }

    #[test]
    fn credentials_are_scrubbed_at_any_depth() {
        let mut frame = json!({
            "type":"login_state","platform":"claude","headers":{"x":"1"},
            "account":{"email_hint":"a***","Cookies":"c=1","nested":[{"token":"t","ok":1}]}
        });
        let mut dropped = Vec::new();
        scrub_credentials(&mut frame, &mut dropped);
        assert_eq!(dropped, vec!["headers", "Cookies", "token"]);
        let text = frame.to_string();
        assert!(!text.contains("c=1") && !text.contains("\"t\""));
        let login = parse_login_state(frame.as_object().unwrap()).unwrap();
        assert_eq!(login.account["email_hint"], "a***");
    }
}
