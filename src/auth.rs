//! The daemon's two access rules, shared by the HTTP API and the WebSocket
//! bridge so they can never drift apart: the shared-secret token (compared in
//! constant time) and the refusal of web origins (HTTP_API.md "Auth and
//! origin").

/// Compares secrets without an early exit, so timing does not reveal how
/// much of a guessed token was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // A length mismatch fails, but the loop still runs over the longer input
    // so the time taken does not depend on where the first difference is.
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

/// Whether `presented` (a raw bearer value, or None) satisfies `token`.
/// With no token configured everything passes (loopback-only by config).
pub fn token_ok(token: Option<&str>, presented: Option<&str>) -> bool {
    match token {
        None => true,
        Some(expected) => constant_time_eq(presented.unwrap_or("").trim().as_bytes(), expected.as_bytes()),
    }
}

/// The bearer value of an `Authorization` header (the scheme name is
/// case-insensitive, RFC 9110).
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Origins allowed to call: the configured ones plus the daemon's own.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new<'a>(configured: impl IntoIterator<Item = &'a String>, own: &[&str]) -> OriginPolicy {
        let mut allowed: Vec<String> =
            configured.into_iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect();
        for origin in own.iter().filter_map(|url| origin_of(url)) {
            allowed.extend(loopback_aliases(&origin));
            allowed.push(origin);
        }
        OriginPolicy { allowed }
    }

    /// Browser pages must not drive the daemon (CSRF, cross-site WebSocket
    /// hijacking): `http(s)://` origins are refused unless allowed. Extension
    /// origins and requests without an Origin (curl, scripts) pass. `null`
    /// comes from sandboxed frames and local files, i.e. web content, so it
    /// is refused too.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let lower = origin.trim().to_ascii_lowercase();
        let is_web = lower.starts_with("http://") || lower.starts_with("https://") || lower == "null";
        !is_web || self.allowed.contains(&lower)
    }
}

/// The names a person may type for the daemon's own loopback address: the
/// status page opened as `http://localhost:PORT/` sends that origin, and it
/// is the same server on the same port.
///
/// A wildcard listen address (`0.0.0.0`, `[::]`) is never what a browser
/// sends, but the daemon behind it answers on loopback too, so the loopback
/// names count for it as well (any other address people use goes in
/// `public_base`).
fn loopback_aliases(origin: &str) -> Vec<String> {
    const NAMES: [&str; 3] = ["127.0.0.1", "localhost", "[::1]"];
    const WILDCARDS: [&str; 2] = ["0.0.0.0", "[::]"];
    let Some((scheme, host)) = origin.split_once("://") else { return Vec::new() };
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    if !NAMES.contains(&name) && !WILDCARDS.contains(&name) {
        return Vec::new();
    }
    NAMES
        .iter()
        .filter(|alias| **alias != name)
        .map(|alias| match port {
            Some(port) => format!("{scheme}://{alias}:{port}"),
            None => format!("{scheme}://{alias}"),
        })
        .collect()
}

/// `scheme://host[:port]` of a URL, lowercased.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(format!("{scheme}://{host}").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn tokens() {
        assert!(token_ok(None, None));
        assert!(token_ok(Some("t"), Some("t")));
        assert!(!token_ok(Some("t"), None));
        assert!(!token_ok(Some("t"), Some("u")));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer")), None);
    }

    #[test]
    fn origins() {
        let p = OriginPolicy::new(&["https://ok.example/".to_string()], &["http://127.0.0.1:4317"]);
        assert!(p.allows(None));
        assert!(p.allows(Some("moz-extension://abc")));
        assert!(p.allows(Some("chrome-extension://abc")));
        assert!(p.allows(Some("https://ok.example")));
        assert!(p.allows(Some("http://127.0.0.1:4317")));
        assert!(!p.allows(Some("https://evil.example")));
        assert!(!p.allows(Some("null")));
        // The daemon's own loopback origin under the other names of loopback,
        // and only on its own port.
        assert!(p.allows(Some("http://localhost:4317")));
        assert!(p.allows(Some("http://[::1]:4317")));
        assert!(!p.allows(Some("http://localhost:4318")));
        assert!(!p.allows(Some("https://localhost:4317")));
        let public = OriginPolicy::new(&[], &["https://conductor.example"]);
        assert!(!public.allows(Some("https://localhost")));
        // Listening on every address: the loopback names of its port.
        let wildcard = OriginPolicy::new(&[], &["http://0.0.0.0:4317"]);
        assert!(wildcard.allows(Some("http://127.0.0.1:4317")));
        assert!(wildcard.allows(Some("http://localhost:4317")));
        assert!(!wildcard.allows(Some("http://192.168.1.5:4317")));
        assert!(!wildcard.allows(Some("http://127.0.0.1:4318")));
        assert_eq!(origin_of("https://x.example:8443/path").as_deref(), Some("https://x.example:8443"));
    }
}
