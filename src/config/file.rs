//! Reading the JSON config file onto a `Config`. The file is parsed into a
//! `serde_json::Value` and walked by hand instead of deserialised, because
//! the walk knows the dotted path of every value: an unknown key or a wrong
//! type is reported as `limits.http_threads must be a positive integer
//! (got "4")` rather than as a serde message about a struct.

use super::{Baa, Bridge, Config, ConfigError, Limits, Policy, Renewal, Role, TimedJobs};
use serde_json::{Map, Value};
use std::path::Path;

type Object = Map<String, Value>;

/// Reads and parses the file. `source` names where the path came from
/// (`--config`, `BAA_CONFIG` or `config_file`) so a missing file is blamed
/// on the right setting.
pub(super) fn read(path: &Path, source: &str) -> Result<Value, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(source, format!("cannot read {shown}: {e}")))?;
    serde_json::from_str::<Strict>(&text)
        .map(|strict| strict.0)
        .map_err(|e| ConfigError::new("config_file", format!("is not valid JSON ({shown}): {e}")))
}

/// A JSON value in which no object repeats a key. Plain `serde_json`
/// keeps the last of two equal keys, so `{"token": "x", "token": null}`
/// would silently leave the API open; a repeated key is a mistake in the
/// file and is reported as one, with its line.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Object::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("the key {key:?} appears twice in one object")));
            }
            let Strict(v) = map.next_value()?;
            obj.insert(key, v);
        }
        Ok(Value::Object(obj))
    }
}

/// Applies every key of the file's top-level object onto `config`.
pub(super) fn apply(config: &mut Config, root: &Value) -> Result<(), ConfigError> {
    let obj = root.as_object().ok_or_else(|| {
        ConfigError::new("config_file", format!("must hold a JSON object (got {})", shown(root)))
    })?;
    for (name, v) in obj {
        let key = name.as_str();
        match key {
            "listen" => config.listen = string(v, key)?,
            "ws_listen" => config.ws_listen = string(v, key)?,
            "node_id" => config.node_id = string(v, key)?,
            "role" => config.role = role(v, key)?,
            "token" => config.token = token(v, key)?,
            "public_base_url" => config.public_base_url = opt_string(v, key)?,
            "allowed_origins" => config.allowed_origins = strings(v, key)?,
            "allowed_hosts" => config.allowed_hosts = strings(v, key)?,
            "limits" => limits(&mut config.limits, object(v, key)?, key)?,
            "timed_jobs" => timed_jobs(&mut config.timed_jobs, object(v, key)?, key)?,
            "renewal" => renewal(&mut config.renewal, object(v, key)?, key)?,
            "messages" => messages(config, object(v, key)?, key)?,
            "policy" => policy(&mut config.policy, object(v, key)?, key)?,
            "baa" => baa(&mut config.baa, object(v, key)?, key)?,
            "bridge" => bridge(&mut config.bridge, object(v, key)?, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn limits(l: &mut Limits, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "http_threads" => l.http_threads = count_usize(v, key)?,
            "max_body_bytes" => l.max_body_bytes = count_usize(v, key)?,
            "max_ws_clients" => l.max_ws_clients = count_usize(v, key)?,
            "max_ws_frame_bytes" => l.max_ws_frame_bytes = count_usize(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn timed_jobs(t: &mut TimedJobs, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "interval_ms" => t.interval_ms = positive(v, key)?,
            "settle_delay_ms" => t.settle_delay_ms = non_negative(v, key)?,
            "max_messages_per_tick" => t.max_messages_per_tick = count_usize(v, key)?,
            "max_tasks_per_tick" => t.max_tasks_per_tick = count_usize(v, key)?,
            "log_retention_days" => t.log_retention_days = positive(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn renewal(r: &mut Renewal, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "template" => r.template = string(v, key)?,
            "summary_limit" => r.summary_limit = count_usize(v, key)?,
            "max_attempts" => r.max_attempts = count_u32(v, key)?,
            "execution_timeout_ms" => r.execution_timeout_ms = positive(v, key)?,
            "retry_base_delay_ms" => r.retry_base_delay_ms = positive(v, key)?,
            "retry_max_delay_ms" => r.retry_max_delay_ms = positive(v, key)?,
            "retry_jitter_ratio" => r.retry_jitter_ratio = number(v, key)?,
            "inter_job_jitter_ms" => r.inter_job_jitter_ms = pair(v, key)?,
            "recheck_delay_ms" => r.recheck_delay_ms = non_negative(v, key)?,
            "recovery_delay_ms" => r.recovery_delay_ms = non_negative(v, key)?,
            "cooldown_ms" => r.cooldown_ms = non_negative(v, key)?,
            "failure_pause_threshold" => r.failure_pause_threshold = count_u32(v, key)?,
            "repeat_pause_threshold" => r.repeat_pause_threshold = count_u32(v, key)?,
            "retention_days" => r.retention_days = positive(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn messages(config: &mut Config, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "retention_days" if v.is_null() => config.messages.retention_days = None,
            "retention_days" => {
                let days = v.as_u64().ok_or_else(|| type_error(key, "a positive integer or null", v))?;
                config.messages.retention_days = Some(days);
            }
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn policy(p: &mut Policy, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "rate_limit" | "backoff" | "circuit_breaker" | "jitter" | "stale_lease" => {
                policy_section(p, name, object(v, key)?, key)?
            }
            "waiter_timeout_ms" => p.waiter_timeout_ms = positive(v, key)?,
            "persistence_debounce_ms" => p.persistence_debounce_ms = non_negative(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

/// The five small policy objects share one walk: each (section, key) pair
/// names exactly one field.
fn policy_section(p: &mut Policy, section: &str, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match (section, name.as_str()) {
            ("rate_limit", "requests_per_minute_per_platform") => {
                p.rate_limit.requests_per_minute_per_platform = count_u32(v, key)?
            }
            ("rate_limit", "window_ms") => p.rate_limit.window_ms = positive(v, key)?,
            ("backoff", "base_ms") => p.backoff.base_ms = positive(v, key)?,
            ("backoff", "max_ms") => p.backoff.max_ms = positive(v, key)?,
            ("circuit_breaker", "failure_threshold") => {
                p.circuit_breaker.failure_threshold = count_u32(v, key)?
            }
            ("circuit_breaker", "open_ms") => p.circuit_breaker.open_ms = positive(v, key)?,
            ("jitter", "min_ms") => p.jitter.min_ms = non_negative(v, key)?,
            ("jitter", "max_ms") => p.jitter.max_ms = non_negative(v, key)?,
            ("jitter", "mu_ms") => p.jitter.mu_ms = non_negative(v, key)?,
            ("jitter", "sigma_ms") => p.jitter.sigma_ms = non_negative(v, key)?,
            ("stale_lease", "idle_ms") => p.stale_lease.idle_ms = positive(v, key)?,
            ("stale_lease", "sweep_interval_ms") => p.stale_lease.sweep_interval_ms = positive(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn baa(b: &mut Baa, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "enabled" => b.enabled = boolean(v, key)?,
            "allowed_tools" => b.allowed_tools = strings(v, key)?,
            "allowed_roots" => b.allowed_roots = strings(v, key)?,
            "max_blocks_per_message" => b.max_blocks_per_message = count_usize(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn bridge(b: &mut Bridge, obj: &Object, path: &str) -> Result<(), ConfigError> {
    for (name, v) in obj {
        let key = &join(path, name);
        match name.as_str() {
            "heartbeat_ms" => b.heartbeat_ms = positive(v, key)?,
            "client_timeout_ms" => b.client_timeout_ms = positive(v, key)?,
            "hello_timeout_ms" => b.hello_timeout_ms = positive(v, key)?,
            "login_fresh_ms" => b.login_fresh_ms = positive(v, key)?,
            _ => return Err(unknown(key)),
        }
    }
    Ok(())
}

fn join(path: &str, name: &str) -> String {
    format!("{path}.{name}")
}

fn unknown(key: &str) -> ConfigError {
    match super::suggest::key(key) {
        Some(known) => ConfigError::new(key, format!("is not a known key; did you mean {known}?")),
        None => ConfigError::new(key, "is not a known key"),
    }
}

fn type_error(key: &str, expected: &str, got: &Value) -> ConfigError {
    ConfigError::new(key, format!("must be {expected} (got {})", shown(got)))
}

/// The offending value as JSON, cut short so the error stays one line.
pub(super) fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Object, ConfigError> {
    v.as_object().ok_or_else(|| type_error(key, "an object", v))
}

fn string(v: &Value, key: &str) -> Result<String, ConfigError> {
    v.as_str().map(str::to_string).ok_or_else(|| type_error(key, "a string", v))
}

fn opt_string(v: &Value, key: &str) -> Result<Option<String>, ConfigError> {
    if v.is_null() {
        return Ok(None);
    }
    v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| type_error(key, "a string or null", v))
}

/// Like `opt_string`, but a wrong value is described by its JSON type only:
/// a numeric token is still a secret and must not be echoed.
fn token(v: &Value, key: &str) -> Result<Option<String>, ConfigError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(ConfigError::new(key, format!("must be a string or null (got {})", type_name(other)))),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn boolean(v: &Value, key: &str) -> Result<bool, ConfigError> {
    v.as_bool().ok_or_else(|| type_error(key, "true or false", v))
}

fn number(v: &Value, key: &str) -> Result<f64, ConfigError> {
    v.as_f64().ok_or_else(|| type_error(key, "a number", v))
}

fn role(v: &Value, key: &str) -> Result<Role, ConfigError> {
    match v.as_str() {
        Some("primary") => Ok(Role::Primary),
        Some("standby") => Ok(Role::Standby),
        _ => Err(type_error(key, "\"primary\" or \"standby\"", v)),
    }
}

fn strings(v: &Value, key: &str) -> Result<Vec<String>, ConfigError> {
    let items = v.as_array().ok_or_else(|| type_error(key, "an array of strings", v))?;
    items.iter().enumerate().map(|(i, item)| string(item, &format!("{key}[{i}]"))).collect()
}

// Integers: the type check only asks for a non-negative integer; zero for a
// value that must be >= 1 passes here and is refused by `validate` with the
// `must be >= 1 (got 0)` message docs/CONFIG.md shows. The wording of the type
// error still says which kind of integer is expected.

fn non_negative(v: &Value, key: &str) -> Result<u64, ConfigError> {
    v.as_u64().ok_or_else(|| type_error(key, "a non-negative integer", v))
}

fn positive(v: &Value, key: &str) -> Result<u64, ConfigError> {
    v.as_u64().ok_or_else(|| type_error(key, "a positive integer", v))
}

fn count_u32(v: &Value, key: &str) -> Result<u32, ConfigError> {
    let n = positive(v, key)?;
    u32::try_from(n).map_err(|_| too_large(key, u64::from(u32::MAX), n))
}

fn count_usize(v: &Value, key: &str) -> Result<usize, ConfigError> {
    let n = positive(v, key)?;
    usize::try_from(n).map_err(|_| too_large(key, usize::MAX as u64, n))
}

fn too_large(key: &str, max: u64, got: u64) -> ConfigError {
    ConfigError::new(key, format!("must be <= {max} (got {got})"))
}

fn pair(v: &Value, key: &str) -> Result<[u64; 2], ConfigError> {
    let expected = "an array of two non-negative integers [min, max]";
    match v.as_array().map(Vec::as_slice) {
        Some([a, b]) => match (a.as_u64(), b.as_u64()) {
            (Some(a), Some(b)) => Ok([a, b]),
            _ => Err(type_error(key, expected, v)),
        },
        _ => Err(type_error(key, expected, v)),
    }
}
