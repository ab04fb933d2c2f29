//! Property tests of what a plugin's text frames go through: the browser
//! JSON reader (`browser_json`), the frame parsers (`frames`: `id`,
//! `hello`, `tabs`, `login_state`, the credential scrub, a delivery's
//! verdict) and the final-message parser shared with `POST /v1/messages`.
//! For any input: no panic, allocation within a bound set by the input's
//! length, every accepted value within its documented limits, and a frame
//! rendered from valid parts parses back to those parts. Cases per
//! property: 256, or `PROPTEST_CASES` (docs/RELIABILITY.md).

use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::final_message::{
    latest_observed_at, parse_final_message, valid_platform, valid_token_id, MAX_ROUTE_PARAMS_BYTES,
};
use super::frames::{
    delivery_verdict, frame_id, parse_hello, parse_login_state, parse_tabs, scrub_credentials, MAX_TABS,
};
use crate::browser_json;
use crate::store::RouteInfo;
use crate::test_alloc::peak_during;

const NOW: i64 = 1_795_299_600_000;

/// Keys the parsers look at, so generated objects often carry them.
const KEYS: &[&str] = &[
    "type",
    "id",
    "client_id",
    "platform",
    "platforms",
    "protocol_version",
    "browser",
    "version",
    "tabs",
    "tab_id",
    "url",
    "title",
    "conversation_id",
    "message_id",
    "role",
    "text",
    "observed_at",
    "page_url",
    "page_title",
    "route",
    "path",
    "pattern",
    "params",
    "organization_id",
    "shell_page",
    "captured_at",
    "account",
    "fingerprint",
    "accepted",
    "failed",
    "http_status",
    "reason",
    "token",
    "Cookies",
    "headers",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![4 => proptest::sample::select(KEYS).prop_map(str::to_string), 1 => "[a-zA-Z_]{0,8}"]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-5i64..5).prop_map(Value::from),
        // Quarters: serde_json (without `float_roundtrip`) may read a long
        // decimal back one ulp off, which is its rounding, not ours.
        any::<i32>().prop_map(|i| Value::from(f64::from(i) / 4.0)),
        ".{0,20}".prop_map(Value::from),
        "[a-z0-9_-]{1,10}".prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec((key(), json_value()), 0..12).prop_map(|pairs| pairs.into_iter().collect())
}

/// Serialised values, cut and spliced, with stray lone surrogate escapes.
fn json_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        Just(br#""\ud83d""#.to_vec()),
        Just(br#"\ude00"#.to_vec()),
        Just(br#"\\"#.to_vec()),
        Just(b"\"".to_vec()),
        Just(b"[".to_vec()),
        Just(b"{\"a\":".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// A parse of `len` bytes may build a `Value` tree: tens of bytes per
/// input byte (`[0,0,…]` is a 32-byte value per two bytes, doubled while
/// its vector grows), never more.
fn value_budget(len: usize) -> usize {
    64 * len + 64 * 1024
}

proptest! {
    #[test]
    fn browser_json_never_panics_and_stays_bounded(
        bytes in prop_oneof![json_like_bytes(), proptest::collection::vec(any::<u8>(), 0..4096)],
    ) {
        let (parsed, peak) = peak_during(|| browser_json::from_slice(&bytes));
        prop_assert!(peak <= value_budget(bytes.len()), "allocated {peak} for {} bytes", bytes.len());
        // Whatever serde_json accepts as it is, is read exactly as serde_json reads it.
        if let Ok(plain) = serde_json::from_slice::<Value>(&bytes) {
            prop_assert_eq!(parsed.ok(), Some(plain));
        }
    }

    #[test]
    fn browser_json_reads_back_what_it_is_given(value in json_value()) {
        prop_assert_eq!(browser_json::from_slice(value.to_string().as_bytes()).ok(), Some(value));
    }

    #[test]
    fn lone_surrogates_become_replacement_characters(
        parts in proptest::collection::vec(
            prop_oneof![
                any::<char>().prop_map(Ok),
                (0xD800u16..=0xDFFF).prop_map(Err),
            ],
            0..20,
        ),
    ) {
        // JSON text as `JSON.stringify` writes a string with cut surrogates.
        let mut text = String::from("{\"text\":\"");
        let mut expected = String::new();
        let mut previous_high = false;
        for part in &parts {
            match part {
                Ok(c) => {
                    let escaped = serde_json::to_string(&c.to_string()).unwrap();
                    text.push_str(&escaped[1..escaped.len() - 1]);
                    expected.push(*c);
                    previous_high = false;
                }
                Err(unit) => {
                    // A high half right before a low half is a real pair.
                    let pairs = previous_high && (0xDC00..=0xDFFF).contains(unit);
                    if pairs {
                        expected.pop();
                        let high = text[text.len() - 4..].to_string();
                        let high = u16::from_str_radix(&high, 16).unwrap();
                        expected.push(char::decode_utf16([high, *unit]).next().unwrap().unwrap());
                    } else {
                        expected.push('\u{fffd}');
                    }
                    text.push_str(&format!("\\u{unit:04x}"));
                    previous_high = !pairs && (0xD800..=0xDBFF).contains(unit);
                }
            }
        }
        text.push_str("\"}");
        prop_assert_eq!(browser_json::from_slice(text.as_bytes()).ok(), Some(json!({ "text": expected })));
    }

    #[test]
    fn frame_parsers_never_panic_and_respect_their_limits(obj in json_object()) {
        if let Ok(Some(id)) = frame_id(&obj) {
            prop_assert!((1..=128).contains(&id.chars().count()));
        }
        if let Ok(hello) = parse_hello(&obj) {
            prop_assert!(valid_token_id(&hello.client_id));
            prop_assert!(hello.platforms.len() <= 64 && hello.platforms.iter().all(|p| valid_platform(p)));
            prop_assert!(hello.browser.as_ref().is_none_or(|b| b.len() <= 64));
            prop_assert!(hello.version.as_ref().is_none_or(|v| v.len() <= 64));
        }
        if let Ok(list) = parse_tabs(&obj) {
            prop_assert!(list.tabs.len() <= MAX_TABS);
            prop_assert!(list.tabs.iter().all(|t| t.tab_id > 0 && valid_platform(&t.platform)));
        }
        if let Ok(login) = parse_login_state(&obj) {
            prop_assert!(valid_platform(&login.platform) && login.captured_at >= 0);
            prop_assert!(login.account.is_null() || login.account.is_object());
        }
        let _ = delivery_verdict(&Value::Object(obj.clone()));
    }

    #[test]
    fn the_scrub_leaves_no_credential_at_any_depth(value in json_value()) {
        let mut scrubbed = value.clone();
        let mut dropped = Vec::new();
        scrub_credentials(&mut scrubbed, &mut dropped);
        prop_assert!(!has_credential_key(&scrubbed), "{scrubbed}");
        prop_assert_eq!(&scrubbed, &without_credentials(&value));
        let mut again = Vec::new();
        scrub_credentials(&mut scrubbed, &mut again);
        prop_assert!(again.is_empty());
        let mut unique = dropped.clone();
        unique.dedup();
        prop_assert_eq!(unique.len(), dropped.len());
    }

    #[test]
    fn a_delivery_succeeds_exactly_when_accepted_not_failed_and_2xx(
        accepted in proptest::option::of(any::<bool>()),
        failed in proptest::option::of(any::<bool>()),
        status in proptest::option::of(prop_oneof![100i64..600, any::<i64>()]),
        reason in proptest::option::of("[a-z_]{0,10}"),
    ) {
        let mut frame = json!({"type": "action_result"});
        if let Some(a) = accepted { frame["accepted"] = json!(a); }
        if let Some(f) = failed { frame["failed"] = json!(f); }
        if let Some(s) = status { frame["http_status"] = json!(s); }
        if let Some(r) = &reason { frame["reason"] = json!(r); }
        let ok = accepted == Some(true) && failed != Some(true) && status.is_none_or(|s| (200..300).contains(&s));
        let verdict = delivery_verdict(&frame);
        prop_assert_eq!(verdict.is_ok(), ok);
        if let (Err(why), Some(r)) = (&verdict, reason.as_ref().filter(|r| !r.is_empty())) {
            prop_assert_eq!(why, r);
        }
    }

    #[test]
    fn a_rendered_hello_parses_back(
        client_id in "[A-Za-z0-9._:-]{1,128}",
        browser in proptest::option::of(".{0,16}"),
        version in proptest::option::of("[0-9.]{0,16}"),
        platforms in proptest::collection::vec("[a-z0-9_-]{1,32}", 0..64),
        tabs in proptest::collection::vec(
            (1i64..i64::MAX, "[a-z0-9_-]{1,32}", proptest::option::of(".{0,40}"), proptest::option::of(".{0,20}"),
             proptest::option::of("[a-zA-Z0-9-]{1,36}")),
            0..20,
        ),
    ) {
        let hello = json!({"type": "hello", "client_id": client_id, "protocol_version": 1,
                           "browser": browser, "version": version, "platforms": platforms});
        let parsed = parse_hello(&reparse(&hello)).unwrap();
        prop_assert_eq!((parsed.client_id, parsed.browser, parsed.version, parsed.platforms),
                        (client_id, browser, version, platforms));
        let frame = json!({"type": "tabs", "tabs": tabs.iter().map(|(id, p, url, title, conv)| {
            json!({"tab_id": id, "platform": p, "url": url, "title": title, "conversation_id": conv})
        }).collect::<Vec<_>>()});
        let parsed = parse_tabs(&reparse(&frame)).unwrap();
        prop_assert_eq!(parsed.dropped, 0);
        let back: Vec<_> = parsed.tabs.into_iter().map(|t| (t.tab_id, t.platform, t.url, t.title, t.conversation_id)).collect();
        prop_assert_eq!(back, tabs);
    }

    #[test]
    fn final_message_parser_never_panics_and_respects_its_limits(obj in json_object(), http in any::<bool>()) {
        if let Ok(m) = parse_final_message(&obj, http, NOW) {
            prop_assert!(valid_platform(&m.platform));
            prop_assert!((1..=512).contains(&m.conversation_id.len()) && (1..=512).contains(&m.message_id.len()));
            prop_assert!(!(m.role == "assistant" && m.text.is_empty()));
            prop_assert!((0..=latest_observed_at(NOW)).contains(&m.observed_at));
            prop_assert!(m.tab_id.is_none_or(|t| t > 0));
            prop_assert!(m.client_id.is_none() || (http && valid_token_id(m.client_id.as_deref().unwrap())));
            prop_assert!(m.page_url.as_ref().is_none_or(|u| u.len() <= 8192));
            prop_assert!(m.page_title.as_ref().is_none_or(|t| t.len() <= 2048));
            if let Some(route) = &m.route {
                prop_assert!(route.path.as_ref().is_none_or(|p| p.len() <= 2048));
                prop_assert!(route.params.as_ref().is_none_or(|p| p.starts_with('{')), "params {:?}", route.params);
                prop_assert!(route.params.as_ref().is_none_or(|p| p.len() <= MAX_ROUTE_PARAMS_BYTES));
            }
        }
    }

    #[test]
    fn a_rendered_final_message_parses_back(m in new_message()) {
        let mut frame = json!({
            "type": "browser.final_message", "platform": m.platform, "conversation_id": m.conversation_id,
            "message_id": m.message_id, "role": m.role, "text": m.text, "observed_at": m.observed_at,
            "page_url": m.page_url, "page_title": m.page_title, "tab_id": m.tab_id,
            "organization_id": m.organization_id, "shell_page": m.shell_page, "client_id": m.client_id,
        });
        if let Some(route) = &m.route {
            let params: Option<Value> = route.params.as_deref().map(|p| serde_json::from_str(p).unwrap());
            frame["route"] = json!({"path": route.path, "pattern": route.pattern, "params": params});
        }
        prop_assert_eq!(parse_final_message(&reparse(&frame), true, NOW), Ok(m.clone()));
        // Over the WebSocket a client_id in the frame is never taken.
        let over_ws = parse_final_message(&reparse(&frame), false, NOW).unwrap();
        prop_assert_eq!(over_ws.client_id, None);
    }
}

fn new_message() -> impl Strategy<Value = crate::store::NewMessage> {
    let ids = ("[a-z0-9_-]{1,32}", ".{1,40}", "[A-Za-z0-9/_-]{1,60}", "(assistant|user|system|tool_call)");
    let text = (".{1,200}", 0..=latest_observed_at(NOW));
    let page = (
        proptest::option::of("https://[a-z.]{1,20}/[a-z0-9/]{0,30}"),
        proptest::option::of(".{0,40}"),
        proptest::option::of(1i64..i64::MAX),
        proptest::option::of("[a-z0-9-]{1,36}"),
        any::<bool>(),
        proptest::option::of("[A-Za-z0-9._:-]{1,128}"),
    );
    let route = proptest::option::of((
        proptest::option::of("/[a-z0-9/]{0,30}"),
        proptest::option::of("/[a-z:/]{0,30}"),
        proptest::option::of(proptest::collection::btree_map("[a-zA-Z]{1,8}", "[a-z0-9]{0,8}", 0..4)),
    ));
    (ids, text, page, route).prop_map(|(ids, text, page, route)| crate::store::NewMessage {
        platform: ids.0,
        conversation_id: ids.1,
        message_id: ids.2,
        role: ids.3,
        text: text.0,
        observed_at: text.1,
        page_url: page.0,
        page_title: page.1,
        tab_id: page.2,
        route: route.map(|(path, pattern, params)| RouteInfo {
            path,
            pattern,
            params: params.map(|p| serde_json::to_string(&p).unwrap()),
        }),
        organization_id: page.3,
        shell_page: page.4,
        client_id: page.5,
    })
}

/// The object a plugin's frame text becomes on the daemon's side.
fn reparse(frame: &Value) -> Map<String, Value> {
    match browser_json::from_slice(frame.to_string().as_bytes()) {
        Ok(Value::Object(obj)) => obj,
        other => panic!("not an object: {other:?}"),
    }
}

/// The credential keys docs/BRIDGE.md lists, compared without case: the
/// oracle is written from the documented list, not from the code's.
fn is_credential(key: &str) -> bool {
    [
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
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(key))
}

fn has_credential_key(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| is_credential(k) || has_credential_key(v)),
        Value::Array(items) => items.iter().any(has_credential_key),
        _ => false,
    }
}

fn without_credentials(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !is_credential(k))
                .map(|(k, v)| (k.clone(), without_credentials(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_credentials).collect()),
        other => other.clone(),
    }
}
