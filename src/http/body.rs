//! JSON request bodies: parsing with a clear 400 for malformed JSON, and
//! typed field readers that name the offending field. Explicit `null` is
//! treated like an absent optional field, as callers reasonably expect.

use serde_json::{Map, Value};

use super::api::{ApiError, ApiRequest};

pub type Object = Map<String, Value>;

impl ApiRequest {
    /// The body as a JSON object; an empty body is an empty object, so
    /// `curl -X POST .../pause` works without `-d '{}'`.
    pub fn json_object(&self) -> Result<Object, ApiError> {
        if self.body.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Object::new());
        }
        let value: Value = crate::browser_json::from_slice(&self.body)
            .map_err(|e| ApiError::malformed_json(format!("Request body is not valid JSON: {e}.")))?;
        match value {
            Value::Object(map) => Ok(map),
            _ => Err(ApiError::malformed_json("Request body must be a JSON object.")),
        }
    }
}

/// An optional string field of at most `max` characters.
pub fn opt_str(obj: &Object, key: &str, max: usize) -> Result<Option<String>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => {
            Err(ApiError::invalid(key, format!("Field \"{key}\" must be at most {max} characters.")))
        }
        Some(_) => Err(ApiError::invalid(key, format!("Field \"{key}\" must be a string."))),
    }
}

/// A free-text reason (pause, drain): a blank one counts as not given, so
/// the documented default applies (`"user"` for a conversation, null for
/// the system) instead of an empty string nobody can read.
pub fn opt_reason(obj: &Object) -> Result<Option<String>, ApiError> {
    Ok(opt_str(obj, "reason", 512)?.filter(|r| !r.trim().is_empty()))
}
