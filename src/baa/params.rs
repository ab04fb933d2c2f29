//! A block's params as the tools read them back from the store: the text,
//! or the JSON object with only the keys the tool knows, each of the right
//! type. The messages name the param, for the block's `invalid_params`
//! summary.

use serde_json::{Map, Value};

use crate::store::{Execution, ParamsKind};

/// A block's stored params, read back.
pub(super) enum Params {
    Text(String),
    Json(Map<String, Value>),
}

impl Params {
    pub(super) fn read(e: &Execution) -> Result<Params, String> {
        let raw = e.params.clone().unwrap_or_default();
        match e.params_kind {
            Some(ParamsKind::Json) => match serde_json::from_str(&raw) {
                Ok(Value::Object(map)) => Ok(Params::Json(map)),
                _ => Err("params are not a JSON object".into()),
            },
            _ => Ok(Params::Text(raw)),
        }
    }

    pub(super) fn none(&self) -> Result<(), String> {
        match self {
            Params::Text(t) if t.trim().is_empty() => Ok(()),
            Params::Json(m) if m.is_empty() => Ok(()),
            _ => Err("takes no params".into()),
        }
    }

    /// The object's keys must all be in `allowed`.
    fn keys(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
        match map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(format!("unknown param {k:?} (params: {})", allowed.join(", "))),
            None => Ok(()),
        }
    }

    fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a string")),
        }
    }

    pub(super) fn exec(self) -> Result<(String, Option<String>, Option<u64>), String> {
        let (command, cwd, timeout) = match self {
            Params::Text(t) => (t, None, None),
            Params::Json(map) => {
                Params::keys(&map, &["command", "cwd", "timeout_ms"])?;
                let timeout = match map.get("timeout_ms") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_u64().ok_or("timeout_ms must be a positive integer")?),
                };
                (Params::string(&map, "command")?.unwrap_or_default(), Params::string(&map, "cwd")?, timeout)
            }
        };
        if command.trim().is_empty() {
            return Err("needs a command".into());
        }
        Ok((command, cwd, timeout))
    }

    pub(super) fn path(self) -> Result<String, String> {
        let path = match self {
            Params::Text(t) => t.trim().to_string(),
            Params::Json(map) => {
                Params::keys(&map, &["path"])?;
                Params::string(&map, "path")?.unwrap_or_default()
            }
        };
        if path.is_empty() {
            return Err("needs a path".into());
        }
        Ok(path)
    }

    pub(super) fn write(self) -> Result<(String, String, bool), String> {
        let Params::Json(map) = self else {
            return Err("takes {\"path\", \"content\", \"append\"?}".into());
        };
        Params::keys(&map, &["path", "content", "append"])?;
        let path = Params::string(&map, "path")?.filter(|p| !p.is_empty()).ok_or("needs a path")?;
        let content = Params::string(&map, "content")?.ok_or("needs a content string")?;
        let append = match map.get("append") {
            None | Some(Value::Null) => false,
            Some(v) => v.as_bool().ok_or("append must be true or false")?,
        };
        Ok((path, content, append))
    }
}
