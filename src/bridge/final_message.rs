//! The wire shape of a final assistant message (docs/BRIDGE.md
//! `browser.final_message`), parsed and validated in one place because the
//! WebSocket frame and `POST /v1/messages` carry the same fields and must be
//! held to the same rules. The result is a store `NewMessage`.

use serde_json::{Map, Value};

use crate::store::{NewMessage, RouteInfo};

/// A field that failed validation, named so the caller can fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The latest `observed_at` accepted at `now`: the end of the next UTC day,
/// so a day or more ahead of the daemon's clock (a plugin's clock may be
/// off by minutes, not by a day). A bound that moves once a day rather
/// than with every millisecond is one the API document can state exactly
/// (`maximum` in `/v1/openapi.json`), and a client can rely on.
pub fn latest_observed_at(now: i64) -> i64 {
    (now.div_euclid(DAY_MS) + 2).saturating_mul(DAY_MS) - 1
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// `[a-z0-9_-]{1,32}`.
pub fn valid_platform(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// `[A-Za-z0-9._:-]{1,128}`: client ids, request ids.
pub fn valid_token_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn string(
    obj: &Map<String, Value>,
    key: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) if required => Err(err(key, format!("Field \"{key}\" is required."))),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if required && s.is_empty() => {
            Err(err(key, format!("Field \"{key}\" must not be empty.")))
        }
        Some(Value::String(s)) if s.len() > max => {
            Err(err(key, format!("Field \"{key}\" must be at most {max} bytes.")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(key, format!("Field \"{key}\" must be a string."))),
    }
}

fn integer(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, FieldError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => crate::browser_json::integer(v)
            .map(Some)
            .ok_or_else(|| err(key, format!("Field \"{key}\" must be an integer."))),
    }
}

/// `route.params` as JSON text, at most: stored with the link and shown in
/// every list of links, it is bounded like `route.path` (whose parameters
/// it names, so a real route is far below this).
pub const MAX_ROUTE_PARAMS_BYTES: usize = 4096;

fn route(obj: &Map<String, Value>) -> Result<Option<RouteInfo>, FieldError> {
    let route = match obj.get("route") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(r)) => r,
        Some(_) => return Err(err("route", "Field \"route\" must be an object.")),
    };
    let params = match route.get("params") {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p.to_string()),
        Some(_) => return Err(err("route.params", "Field \"route.params\" must be an object.")),
    };
    if params.as_ref().is_some_and(|p| p.len() > MAX_ROUTE_PARAMS_BYTES) {
        let message =
            format!("Field \"route.params\" must be at most {MAX_ROUTE_PARAMS_BYTES} bytes as JSON.");
        return Err(err("route.params", message));
    }
    // Named in full in the message too: over the WebSocket the message is
    // the only place the field is named.
    let nested = |name: &str, e: FieldError| {
        err(
            &format!("route.{name}"),
            e.message.replacen(&format!("\"{name}\""), &format!("\"route.{name}\""), 1),
        )
    };
    let path = string(route, "path", 2048, false).map_err(|e| nested("path", e))?;
    let pattern = string(route, "pattern", 2048, false).map_err(|e| nested("pattern", e))?;
    Ok(Some(RouteInfo { path, pattern, params }))
}

/// Parses the message fields of a frame or request body. `client_id` is
/// read from the body only when `allow_client_id` (the HTTP route); the bridge
/// passes the connection's own client id instead. Fields are checked in
/// the order below; the first that fails is the one reported.
pub fn parse_final_message(
    obj: &Map<String, Value>,
    allow_client_id: bool,
    now: i64,
) -> Result<NewMessage, FieldError> {
    let platform = platform(obj)?;
    let conversation_id = string(obj, "conversation_id", 512, true)?.unwrap_or_default();
    let message_id = string(obj, "message_id", 512, true)?.unwrap_or_default();
    let role = role(obj)?;
    let text = text(obj, &role)?;
    let observed_at = observed_at(obj, now)?;
    let tab_id = integer(obj, "tab_id")?;
    if matches!(tab_id, Some(t) if t <= 0) {
        return Err(err("tab_id", "Field \"tab_id\" must be a positive integer."));
    }
    let shell_page = match obj.get("shell_page") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(err("shell_page", "Field \"shell_page\" must be a boolean.")),
    };
    let client_id = if allow_client_id { client_id(obj)? } else { None };
    Ok(NewMessage {
        platform,
        conversation_id,
        message_id,
        role,
        text,
        observed_at,
        page_url: string(obj, "page_url", 8192, false)?,
        page_title: string(obj, "page_title", 2048, false)?,
        tab_id,
        route: route(obj)?,
        organization_id: string(obj, "organization_id", 512, false)?,
        shell_page,
        client_id,
    })
}

fn platform(obj: &Map<String, Value>) -> Result<String, FieldError> {
    let platform = string(obj, "platform", 32, true)?.unwrap_or_default();
    if !valid_platform(&platform) {
        return Err(err("platform", "Field \"platform\" must match [a-z0-9_-]{1,32}."));
    }
    Ok(platform)
}

fn role(obj: &Map<String, Value>) -> Result<String, FieldError> {
    let role = string(obj, "role", 32, false)?.unwrap_or_else(|| "assistant".into());
    if role.is_empty() || !role.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(err("role", "Field \"role\" must match [a-z_]{1,32}, e.g. \"assistant\" or \"user\"."));
    }
    Ok(role)
}

fn text(obj: &Map<String, Value>, role: &str) -> Result<String, FieldError> {
    let text = match obj.get("text") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(err("text", "Field \"text\" is required.")),
        Some(_) => return Err(err("text", "Field \"text\" must be a string.")),
    };
    // Only an empty text is refused (docs/BRIDGE.md): a text of
    // whitespace is still what the page showed, and is stored like any other.
    if text.is_empty() && role == "assistant" {
        return Err(err("text", "Field \"text\" must not be empty for an assistant message."));
    }
    Ok(text)
}

/// `observed_at`, defaulting to `now`.
fn observed_at(obj: &Map<String, Value>, now: i64) -> Result<i64, FieldError> {
    let observed_at = integer(obj, "observed_at")?.unwrap_or(now);
    if observed_at < 0 {
        return Err(err("observed_at", "Field \"observed_at\" must be milliseconds since the epoch (>= 0)."));
    }
    // A message stamped far ahead would stay its conversation's newest for
    // good, and every real message after it would be skipped as superseded
    // (docs/RENEWAL.md), so the conversation would never be renewed again.
    if observed_at > latest_observed_at(now) {
        return Err(err(
            "observed_at",
            "Field \"observed_at\" is past the end of tomorrow (UTC) by the daemon's clock (milliseconds since the epoch expected).",
        ));
    }
    Ok(observed_at)
}

fn client_id(obj: &Map<String, Value>) -> Result<Option<String>, FieldError> {
    let client_id = string(obj, "client_id", 128, false)?;
    if matches!(&client_id, Some(c) if !valid_token_id(c)) {
        return Err(err("client_id", "Field \"client_id\" must match [A-Za-z0-9._:-]{1,128}."));
    }
    Ok(client_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<NewMessage, FieldError> {
        parse_final_message(v.as_object().unwrap(), true, 42)
    }

    #[test]
    fn observed_at_may_reach_the_end_of_tomorrow_utc() {
        const NOW: i64 = 10 * DAY_MS + 1000; // just after midnight UTC
        let at = |observed_at: Value| {
            let body = json!({"platform": "p", "conversation_id": "c", "message_id": "m", "text": "t",
                              "observed_at": observed_at, "tab_id": 17.0});
            parse_final_message(body.as_object().unwrap(), true, NOW)
        };
        assert_eq!(at(json!(NOW + 40 * 3_600_000)).unwrap().observed_at, NOW + 40 * 3_600_000);
        assert_eq!(at(json!(12 * DAY_MS - 1)).unwrap().tab_id, Some(17));
        assert_eq!(at(json!(12 * DAY_MS)).unwrap_err().field, "observed_at");
        assert_eq!(latest_observed_at(12 * DAY_MS - 1), 13 * DAY_MS - 1);
    }

    #[test]
    fn minimal_message_gets_defaults() {
        let m =
            parse(json!({"platform":"chatgpt","conversation_id":"c","message_id":"m","text":"hi"})).unwrap();
        assert_eq!(m.role, "assistant");
        assert_eq!(m.observed_at, 42);
        assert!(!m.shell_page);
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = json!({"platform":"chatgpt","conversation_id":"c","message_id":"m","text":"hi"});
        let cases = [
            ("platform", json!("Bad Platform")),
            ("platform", json!(7)),
            ("conversation_id", json!("")),
            ("message_id", Value::Null),
            ("text", json!(1)),
            ("text", json!("")),
            ("observed_at", json!("now")),
            ("tab_id", json!(0)),
            ("shell_page", json!("yes")),
            ("client_id", json!("has space")),
            ("route", json!("x")),
            ("role", json!("Assistant")),
        ];
        for (field, value) in cases {
            let mut obj = base.clone();
            obj[field] = value.clone();
            let e = parse(obj).unwrap_err();
            assert_eq!(e.field, field, "value {value}");
        }
        let mut obj = base.clone();
        obj["route"] = json!({"params": []});
        assert_eq!(parse(obj.clone()).unwrap_err().field, "route.params");
        // `{"k":"…"}` is 8 bytes around the value.
        obj["route"] = json!({"params": {"k": "v".repeat(MAX_ROUTE_PARAMS_BYTES - 8)}});
        assert!(parse(obj.clone()).is_ok());
        obj["route"] = json!({"params": {"k": "v".repeat(MAX_ROUTE_PARAMS_BYTES - 7)}});
        assert_eq!(parse(obj).unwrap_err().field, "route.params");
    }

    #[test]
    fn empty_text_allowed_for_user_role() {
        let m = parse(
            json!({"platform":"claude","conversation_id":"c","message_id":"m","text":"","role":"user"}),
        );
        assert!(m.is_ok());
    }
}
