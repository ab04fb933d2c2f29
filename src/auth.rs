//! The daemon's access rules, shared by the HTTP API and the WebSocket
//! bridge so they can never drift apart: the shared-secret token (compared in
//! constant time), the refusal of web origins, and the `Host` check that
//! defeats DNS rebinding (docs/API.md "Auth, origin and host").

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

/// The `Host` values the daemon answers to. A web page whose name was
/// re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with itself, so its
/// GETs carry no `Origin`; only `Host: its-name` gives it away. Accepted:
/// loopback names and addresses with any port, the daemon's own bound
/// addresses (every IP address when bound to a wildcard: an address is never
/// a rebound name), the host of `public_base_url`, and `allowed_hosts`.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Lower-case host names or addresses (IPv6 in brackets), each with the
    /// port it requires, or None for any port.
    allowed: Vec<(String, Option<u16>)>,
    /// Bound to `0.0.0.0` or `[::]`: any IP address literal is the daemon.
    any_address: bool,
}

impl HostPolicy {
    /// `configured`: `allowed_hosts` (`name` or `name:port`); `bound`: the
    /// listeners' `ip:port`; `urls`: base URLs whose host is the daemon's.
    pub fn new(configured: &[String], bound: &[std::net::SocketAddr], urls: &[&str]) -> HostPolicy {
        let mut policy = HostPolicy::default();
        for entry in configured {
            if let Some((name, port)) = split_host(entry) {
                policy.allowed.push((name, port));
            }
        }
        for addr in bound {
            if addr.ip().is_unspecified() {
                policy.any_address = true;
            }
            policy.allowed.push((host_of_ip(addr.ip()), None));
        }
        let url_hosts = urls.iter().filter_map(|url| origin_of(url)).filter_map(|o| {
            let authority = o.split_once("://")?.1.to_string();
            split_host(&authority)
        });
        policy.allowed.extend(url_hosts.map(|(name, _)| (name, None)));
        policy
    }

    /// Whether a `Host` header value names the daemon.
    pub fn allows(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else { return false };
        if is_loopback_name(&name) || (self.any_address && parse_ip(&name).is_some()) {
            return true;
        }
        self.allowed.iter().any(|(allowed, need)| *allowed == name && need.is_none_or(|p| Some(p) == port))
    }
}

/// `name[:port]` or `[v6][:port]`, lower-cased, one trailing dot dropped.
/// None for anything that is not a plain host (userinfo, paths, spaces).
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim().to_ascii_lowercase();
    let (name, port) = if value.starts_with('[') {
        let end = value.find(']')?;
        let (name, rest) = value.split_at(end + 1);
        match rest {
            "" => (name.to_string(), None),
            _ => (name.to_string(), Some(rest.strip_prefix(':')?)),
        }
    } else {
        match value.rsplit_once(':') {
            Some((name, port)) => (name.to_string(), Some(port)),
            None => (value.clone(), None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    let name = name.strip_suffix('.').unwrap_or(&name).to_string();
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':');
    (!name.is_empty() && name.bytes().all(plain)).then_some((name, port))
}

fn parse_ip(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => name.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// `localhost`, `127.0.0.0/8`, `[::1]` (and `[::ffff:127.x.y.z]`).
fn is_loopback_name(name: &str) -> bool {
    if name == "localhost" {
        return true;
    }
    match parse_ip(name) {
        Some(IpAddr::V4(v4)) => v4.is_loopback(),
        Some(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        None => false,
    }
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

    #[test]
    fn hosts() {
        let bound: Vec<std::net::SocketAddr> = vec!["127.0.0.1:4317".parse().unwrap()];
        let p = HostPolicy::new(&["conductor.lan".into(), "Box.Example:8080".into()], &bound, &[]);
        for ok in [
            "127.0.0.1:4317",
            "127.0.0.1",
            "127.9.8.7:1",
            "localhost",
            "LOCALHOST:4317",
            "localhost.:80",
            "[::1]:4317",
            "[::1]",
            "[::ffff:127.0.0.1]:4317",
            "conductor.lan",
            "conductor.lan:4317",
            "box.example:8080",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in [
            "",
            "attacker.example",
            "attacker.example:4317",
            "localhost.attacker.example",
            "127.0.0.1.attacker.example",
            "box.example",
            "box.example:8081",
            "192.168.1.5:4317",
            "[::2]:4317",
            "127.0.0.1:notaport",
            "user@127.0.0.1",
            "127.0.0.1/x",
            "0x7f.1",
            "2130706433",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
        // Bound to a LAN address: that address too; a wildcard: any address,
        // never a name.
        let lan = HostPolicy::new(&[], &["192.168.1.5:4317".parse().unwrap()], &[]);
        assert!(lan.allows("192.168.1.5:4317"));
        assert!(!lan.allows("192.168.1.6:4317"));
        let any = HostPolicy::new(&[], &["0.0.0.0:4317".parse().unwrap()], &[]);
        assert!(any.allows("192.168.1.6:4317"));
        assert!(any.allows("[fe80::1]:4317"));
        assert!(!any.allows("attacker.example"));
        // The public base URL's host is the daemon's own name.
        let public = HostPolicy::new(&[], &bound, &["https://conductor.example:8443"]);
        assert!(public.allows("conductor.example"));
        assert!(!public.allows("attacker.example"));
    }
}
