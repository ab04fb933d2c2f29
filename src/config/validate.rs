//! The rules of docs/CONFIG.md, checked once at start. Each rule names the key
//! and shows the offending value (never the token), so a bad setting ends
//! the start with one line that says exactly what to fix.
//!
//! Decisions of our own (docs/CONFIG.md lists them with the rules), all in the spirit of refusing
//! values that would misbehave later rather than at start:
//! - `bridge.client_timeout_ms` must be greater than `bridge.heartbeat_ms`:
//!   an idle plugin is only heard from when it answers a ping, so a shorter
//!   timeout would drop healthy clients between two pings.
//! - Every millisecond value is at most ten years and every retention at
//!   most 36 500 days, and `limits.http_threads` at most 1024, so that
//!   adding a delay to a clock or spawning the pool can never overflow.
//! - In the renewal template, `{word}` (letters, digits, `_`) is a
//!   placeholder and must be one of the known ones; any other brace is
//!   literal text and is sent as is. An empty template is refused.
//! - `listen` and `ws_listen` must not resolve to the same address with a
//!   fixed port, which could only fail later at bind time.

use super::{file, Baa, Bridge, Config, ConfigError, BAA_TOOLS, TEMPLATE_PLACEHOLDERS};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

/// Ten years in milliseconds.
const MAX_MS: u64 = 315_360_000_000;
const MAX_RETENTION_DAYS: u64 = 36_500;
const MAX_HTTP_THREADS: u64 = 1024;
const MAX_TOKEN_CHARS: usize = 256;

/// Checks every rule; the first broken one is returned.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    check_durations(config)?;
    check_counts(config)?;
    check_ranges(config)?;
    check_bridge(&config.bridge)?;
    check_node_id(&config.node_id)?;
    check_template(&config.renewal.template)?;
    check_baa(&config.baa)?;
    check_public_base_url(config.public_base_url.as_deref())?;
    check_origins(&config.allowed_origins)?;
    check_hosts(&config.allowed_hosts)?;
    check_token(config.token.as_deref())?;
    check_addresses(config)
}

/// True when `addr` (`HOST:PORT`) resolves and every address it resolves
/// to is a loopback address; false when it does not resolve.
pub fn is_loopback(addr: &str) -> bool {
    match addr.to_socket_addrs() {
        Ok(addrs) => all_loopback(&addrs.collect::<Vec<_>>()),
        Err(_) => false,
    }
}

fn all_loopback(addrs: &[SocketAddr]) -> bool {
    // IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is loopback too.
    !addrs.is_empty() && addrs.iter().all(|a| a.ip().to_canonical().is_loopback())
}

fn err(key: &str, message: String) -> ConfigError {
    ConfigError::new(key, message)
}

/// Every millisecond setting, and whether it is a period that must be > 0
/// (the others are delays that 0 switches off).
fn durations(c: &Config) -> [(&'static str, u64, bool); 26] {
    let (t, r, p, b) = (&c.timed_jobs, &c.renewal, &c.policy, &c.bridge);
    [
        ("timed_jobs.interval_ms", t.interval_ms, true),
        ("timed_jobs.settle_delay_ms", t.settle_delay_ms, false),
        ("renewal.execution_timeout_ms", r.execution_timeout_ms, true),
        ("renewal.retry_base_delay_ms", r.retry_base_delay_ms, true),
        ("renewal.retry_max_delay_ms", r.retry_max_delay_ms, true),
        ("renewal.inter_job_jitter_ms[0]", r.inter_job_jitter_ms[0], false),
        ("renewal.inter_job_jitter_ms[1]", r.inter_job_jitter_ms[1], false),
        ("renewal.recheck_delay_ms", r.recheck_delay_ms, false),
        ("renewal.recovery_delay_ms", r.recovery_delay_ms, false),
        ("renewal.cooldown_ms", r.cooldown_ms, false),
        ("policy.rate_limit.window_ms", p.rate_limit.window_ms, true),
        ("policy.backoff.base_ms", p.backoff.base_ms, true),
        ("policy.backoff.max_ms", p.backoff.max_ms, true),
        ("policy.circuit_breaker.open_ms", p.circuit_breaker.open_ms, true),
        ("policy.jitter.min_ms", p.jitter.min_ms, false),
        ("policy.jitter.max_ms", p.jitter.max_ms, false),
        ("policy.jitter.mu_ms", p.jitter.mu_ms, false),
        ("policy.jitter.sigma_ms", p.jitter.sigma_ms, false),
        ("policy.stale_lease.idle_ms", p.stale_lease.idle_ms, true),
        ("policy.stale_lease.sweep_interval_ms", p.stale_lease.sweep_interval_ms, true),
        ("policy.waiter_timeout_ms", p.waiter_timeout_ms, true),
        ("policy.persistence_debounce_ms", p.persistence_debounce_ms, false),
        ("bridge.heartbeat_ms", b.heartbeat_ms, true),
        ("bridge.client_timeout_ms", b.client_timeout_ms, true),
        ("bridge.hello_timeout_ms", b.hello_timeout_ms, true),
        ("bridge.login_fresh_ms", b.login_fresh_ms, true),
    ]
}

fn check_durations(c: &Config) -> Result<(), ConfigError> {
    for (key, value, period) in durations(c) {
        if period && value == 0 {
            return Err(err(key, format!("must be > 0 (got {value})")));
        }
        if value > MAX_MS {
            return Err(err(key, format!("must be <= {MAX_MS} (ten years) (got {value})")));
        }
    }
    Ok(())
}

/// Every count and threshold (each must be >= 1) with its upper bound.
fn counts(c: &Config) -> [(&'static str, u64, u64); 15] {
    let (l, t, r, p) = (&c.limits, &c.timed_jobs, &c.renewal, &c.policy);
    let n = |v: usize| v as u64;
    [
        ("limits.http_threads", n(l.http_threads), MAX_HTTP_THREADS),
        ("limits.max_body_bytes", n(l.max_body_bytes), u64::MAX),
        ("limits.max_ws_clients", n(l.max_ws_clients), u64::MAX),
        ("limits.max_ws_frame_bytes", n(l.max_ws_frame_bytes), u64::MAX),
        ("timed_jobs.max_messages_per_tick", n(t.max_messages_per_tick), u64::MAX),
        ("timed_jobs.max_tasks_per_tick", n(t.max_tasks_per_tick), u64::MAX),
        ("timed_jobs.log_retention_days", t.log_retention_days, MAX_RETENTION_DAYS),
        ("renewal.summary_limit", n(r.summary_limit), u64::MAX),
        ("renewal.max_attempts", u64::from(r.max_attempts), u64::MAX),
        ("renewal.failure_pause_threshold", u64::from(r.failure_pause_threshold), u64::MAX),
        ("renewal.repeat_pause_threshold", u64::from(r.repeat_pause_threshold), u64::MAX),
        ("renewal.retention_days", r.retention_days, MAX_RETENTION_DAYS),
        (
            "policy.rate_limit.requests_per_minute_per_platform",
            u64::from(p.rate_limit.requests_per_minute_per_platform),
            u64::MAX,
        ),
        (
            "policy.circuit_breaker.failure_threshold",
            u64::from(p.circuit_breaker.failure_threshold),
            u64::MAX,
        ),
        ("baa.max_blocks_per_message", n(c.baa.max_blocks_per_message), u64::MAX),
    ]
}

fn check_counts(c: &Config) -> Result<(), ConfigError> {
    let messages = c.messages.retention_days.map(|d| ("messages.retention_days", d, MAX_RETENTION_DAYS));
    for (key, value, max) in counts(c).into_iter().chain(messages) {
        if value == 0 {
            return Err(err(key, format!("must be >= 1 (got {value})")));
        }
        if value > max {
            return Err(err(key, format!("must be <= {max} (got {value})")));
        }
    }
    Ok(())
}

fn check_ranges(c: &Config) -> Result<(), ConfigError> {
    let (r, p) = (&c.renewal, &c.policy);
    let [lo, hi] = r.inter_job_jitter_ms;
    if lo > hi {
        let message = format!("must be [min, max] with min <= max (got [{lo}, {hi}])");
        return Err(err("renewal.inter_job_jitter_ms", message));
    }
    check_min_max("policy.jitter.min_ms", p.jitter.min_ms, "policy.jitter.max_ms", p.jitter.max_ms)?;
    check_min_max("policy.backoff.base_ms", p.backoff.base_ms, "policy.backoff.max_ms", p.backoff.max_ms)?;
    check_min_max(
        "renewal.retry_base_delay_ms",
        r.retry_base_delay_ms,
        "renewal.retry_max_delay_ms",
        r.retry_max_delay_ms,
    )?;
    let ratio = r.retry_jitter_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(err("renewal.retry_jitter_ratio", format!("must be between 0 and 1 (got {ratio})")));
    }
    Ok(())
}

fn check_min_max(min_key: &str, min: u64, max_key: &str, max: u64) -> Result<(), ConfigError> {
    if min > max {
        return Err(err(min_key, format!("must be <= {max_key} (got {min} > {max})")));
    }
    Ok(())
}

fn check_bridge(b: &Bridge) -> Result<(), ConfigError> {
    if b.client_timeout_ms <= b.heartbeat_ms {
        let message =
            format!("must be > bridge.heartbeat_ms (got {} <= {})", b.client_timeout_ms, b.heartbeat_ms);
        return Err(err("bridge.client_timeout_ms", message));
    }
    Ok(())
}

fn check_node_id(id: &str) -> Result<(), ConfigError> {
    let allowed = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | ':' | '-');
    let len = id.chars().count();
    if !(1..=64).contains(&len) || !id.chars().all(allowed) {
        let message = format!("must be 1 to 64 characters of A-Z a-z 0-9 . _ : - (got {id:?})");
        return Err(err("node_id", message));
    }
    Ok(())
}

fn check_template(template: &str) -> Result<(), ConfigError> {
    let key = "renewal.template";
    if template.trim().is_empty() {
        return Err(err(key, format!("must not be empty (got {template:?})")));
    }
    if let Some(name) = placeholders(template).find(|n| !TEMPLATE_PLACEHOLDERS.contains(n)) {
        let known: Vec<String> = TEMPLATE_PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect();
        let message = format!("has unknown placeholder {{{name}}} (known: {})", known.join(" "));
        return Err(err(key, message));
    }
    Ok(())
}

/// The names of the `{word}` placeholders in a template, in order.
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template.match_indices('{').filter_map(move |(start, _)| {
        let rest = &template[start + 1..];
        let end = rest.find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))?;
        (end > 0 && rest[end..].starts_with('}')).then(|| &rest[..end])
    })
}

fn check_baa(baa: &Baa) -> Result<(), ConfigError> {
    for (i, tool) in baa.allowed_tools.iter().enumerate() {
        if !BAA_TOOLS.contains(&tool.as_str()) {
            let message = format!("is not a known tool (got {tool:?}; known: {})", BAA_TOOLS.join(" "));
            return Err(err(&format!("baa.allowed_tools[{i}]"), message));
        }
    }
    for (i, root) in baa.allowed_roots.iter().enumerate() {
        if !Path::new(root).is_absolute() {
            let message = format!("must be an absolute path (got {root:?})");
            return Err(err(&format!("baa.allowed_roots[{i}]"), message));
        }
    }
    Ok(())
}

fn check_public_base_url(url: Option<&str>) -> Result<(), ConfigError> {
    let Some(url) = url else { return Ok(()) };
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let problem = match rest {
        None => "must start with http:// or https://",
        Some(r) if r.is_empty() || r.starts_with('/') => "must name a host after the scheme",
        Some(_) if url.ends_with('/') => "must not end with /",
        Some(_) if url.contains(['?', '#']) => "must not have a query or fragment",
        Some(_) if url.chars().any(|ch| ch.is_whitespace() || ch.is_control()) => {
            "must not contain spaces or control characters"
        }
        Some(_) => return Ok(()),
    };
    Err(err("public_base_url", format!("{problem} (got {url:?})")))
}

fn check_origins(origins: &[String]) -> Result<(), ConfigError> {
    for (i, origin) in origins.iter().enumerate() {
        if !origin_ok(origin) {
            let message = format!("must look like scheme://host[:port] without a path (got {origin:?})");
            return Err(err(&format!("allowed_origins[{i}]"), message));
        }
    }
    Ok(())
}

fn check_hosts(hosts: &[String]) -> Result<(), ConfigError> {
    for (i, host) in hosts.iter().enumerate() {
        if !authority_ok(host) {
            let message = format!("must look like host or host:port (got {host:?})");
            return Err(err(&format!("allowed_hosts[{i}]"), message));
        }
    }
    Ok(())
}

/// `scheme://host[:port]` in the lower case browsers send in `Origin`.
fn origin_ok(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|ch| ch.is_ascii_lowercase())
        && chars.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '+' | '-' | '.'));
    scheme_ok && authority_ok(authority)
}

fn authority_ok(authority: &str) -> bool {
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(inner) => match inner.split_once(']') {
            Some((host, after)) => (ipv6_ok(host), after),
            None => return false,
        },
        None => match authority.rfind(':') {
            Some(i) => (hostname_ok(&authority[..i]), &authority[i..]),
            None => (hostname_ok(authority), ""),
        },
    };
    host_ok && port_ok(port)
}

fn ipv6_ok(host: &str) -> bool {
    !host.is_empty() && host.chars().all(|ch| ch.is_ascii_hexdigit() || ch == ':' || ch == '.')
}

fn hostname_ok(host: &str) -> bool {
    let allowed = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '-' | '.' | '_');
    !host.is_empty() && host.chars().all(allowed)
}

/// Empty, or `:` and a port 1..=65535.
fn port_ok(port: &str) -> bool {
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => {
            digits.len() <= 5
                && digits.chars().all(|ch| ch.is_ascii_digit())
                && digits.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
        }
    }
}

/// The token's value is never shown, only what is wrong with it.
fn check_token(token: Option<&str>) -> Result<(), ConfigError> {
    let Some(token) = token else { return Ok(()) };
    let len = token.chars().count();
    let printable = token.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if (1..=MAX_TOKEN_CHARS).contains(&len) && printable {
        return Ok(());
    }
    let detail = if printable {
        format!("{len} characters")
    } else {
        format!("{len} characters, some of them spaces or not printable ASCII")
    };
    let message =
        format!("must be 1 to {MAX_TOKEN_CHARS} printable ASCII characters without spaces (got {detail})");
    Err(err("token", message))
}

fn check_addresses(c: &Config) -> Result<(), ConfigError> {
    let http = resolve("listen", &c.listen)?;
    let ws = resolve("ws_listen", &c.ws_listen)?;
    if let Some(addr) = http.iter().find(|a| a.port() != 0 && ws.contains(a)) {
        let message = format!("must differ from listen (both are {addr}; got {:?})", c.ws_listen);
        return Err(err("ws_listen", message));
    }
    if c.token.is_none() {
        for (key, text, addrs) in [("listen", &c.listen, &http), ("ws_listen", &c.ws_listen, &ws)] {
            if !all_loopback(addrs) {
                let message = format!("is required when {key} ({text}) is not a loopback address");
                return Err(err("token", message));
            }
        }
    }
    Ok(())
}

fn resolve(key: &str, addr: &str) -> Result<Vec<SocketAddr>, ConfigError> {
    let shown = file::shown(&serde_json::Value::from(addr));
    match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                return Err(err(key, format!("must be HOST:PORT that resolves (got {shown}: no address)")));
            }
            Ok(addrs)
        }
        Err(e) => Err(err(key, format!("must be HOST:PORT that resolves (got {shown}: {e})"))),
    }
}
