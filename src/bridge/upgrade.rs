//! The WebSocket opening handshake (RFC 6455 §4.2), ours rather than
//! tungstenite's `accept`: the request head is read under the connection's
//! one deadline (handshake and hello together get `hello_timeout_ms` from
//! accept, however slowly the bytes drip), and every request that is not a
//! good upgrade gets an HTTP answer with a JSON reason instead of a silent
//! close. Checked in this order:
//!
//! 1. not `GET`, or not HTTP/1.1 → 400 `invalid_request`;
//! 2. unknown path → 404; no or two `Host` → 400; a foreign `Host` → 403
//!    `forbidden_host`; a web `Origin` → 403; a missing or wrong token →
//!    401; `max_ws_clients` plugins connected → 503 `too_many_clients`;
//! 3. not an upgrade (a plain GET) → 426 `upgrade_required`, which is also
//!    how a plain GET learns that its upgrade would be accepted (browsers
//!    hide a refused handshake from scripts; the extension's popup asks
//!    this way); `Sec-WebSocket-Version` other than 13 → 426
//!    `unsupported_version` naming 13; a missing or malformed
//!    `Sec-WebSocket-Key` → 400.
//!
//! Then `101 Switching Protocols`; bytes read past the head belong to the
//! WebSocket and are handed on.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;

use super::BridgeCtx;
use crate::auth::{bearer, token_ok};

/// Largest request head read; a longer one is refused with 431.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// How long a refused connection is drained after its answer, so closing
/// does not reset it under the answer.
const LINGER: Duration = Duration::from_millis(500);

/// A refused upgrade: the HTTP answer.
struct Refusal {
    status: u16,
    code: &'static str,
    message: &'static str,
    headers: &'static [(&'static str, &'static str)],
}

const fn refuse(status: u16, code: &'static str, message: &'static str) -> Refusal {
    Refusal { status, code, message, headers: &[] }
}

/// Reads and judges the request, answers it, and returns the bytes read
/// past its head when it was upgraded; `None` when the connection is over
/// (refused, silent past the deadline, gone).
pub(super) fn handshake(tcp: &TcpStream, deadline: Instant, ctx: &BridgeCtx) -> Option<Vec<u8>> {
    let (buf, head_len) = match read_head(tcp, deadline) {
        Ok(read) => read,
        Err(Some(refusal)) => {
            answer(tcp, &refusal);
            return None;
        }
        Err(None) => return None,
    };
    match judge(&buf[..head_len], ctx) {
        Ok(accept) => {
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            (&*tcp).write_all(answer.as_bytes()).ok()?;
            Some(buf[head_len..].to_vec())
        }
        Err(refusal) => {
            answer(tcp, &refusal);
            None
        }
    }
}

/// Reads until a complete head is buffered, by `deadline` at the latest.
/// `Err(None)`: silence, end of stream or an error (nothing to answer).
fn read_head(tcp: &TcpStream, deadline: Instant) -> Result<(Vec<u8>, usize), Option<Refusal>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&buf) {
            Ok(httparse::Status::Complete(n)) => return Ok((buf, n)),
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(Some(refuse(431, "invalid_request", "The request head is too large.")))
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(Some(refuse(400, "invalid_request", "Malformed request."))),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return Err(None);
        }
        match (&*tcp).read(&mut chunk) {
            Ok(0) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(None),
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a good upgrade, or the refusal.
fn judge(head: &[u8], ctx: &BridgeCtx) -> Result<String, Refusal> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    req.parse(head).map_err(|_| refuse(400, "invalid_request", "Malformed request."))?;
    if req.method != Some("GET") {
        return Err(refuse(400, "invalid_request", "A WebSocket upgrade is a GET request."));
    }
    if req.version != Some(1) {
        return Err(refuse(400, "invalid_request", "A WebSocket upgrade needs HTTP/1.1."));
    }
    let headers: Vec<(&str, &str)> =
        req.headers.iter().filter_map(|h| Some((h.name, std::str::from_utf8(h.value).ok()?))).collect();
    admit(req.path.unwrap_or("/"), &headers, ctx)?;
    upgrade_fields(&headers)
}

/// The first value of a header, by case-insensitive name.
fn field<'a>(headers: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

/// Step 2: who may connect (docs/BRIDGE.md "Connecting").
fn admit(target: &str, headers: &[(&str, &str)], ctx: &BridgeCtx) -> Result<(), Refusal> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path != "/ws/browser" && path != "/ws/firefox" {
        return Err(refuse(404, "not_found", "Unknown WebSocket path; use /ws/browser."));
    }
    let hosts: Vec<&str> =
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("host")).map(|(_, v)| *v).collect();
    match hosts.as_slice() {
        [host] if ctx.hosts.allows(host) => {}
        [host] => {
            log::warn!("bridge: refused upgrade for host {host:?}");
            return Err(refuse(
                403,
                "forbidden_host",
                "Host is not this daemon; add it to allowed_hosts if it is.",
            ));
        }
        _ => {
            return Err(refuse(400, "invalid_request", "A WebSocket upgrade needs exactly one Host header."))
        }
    }
    let origin = field(headers, "origin");
    if !ctx.origins.allows(origin) {
        log::warn!("bridge: refused upgrade from web origin {origin:?}");
        return Err(refuse(403, "forbidden_origin", "Web origins may not connect."));
    }
    let query_token = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .and_then(|t| crate::percent::percent_decode(t, true));
    let presented = bearer(field(headers, "authorization")).map(str::to_string).or(query_token);
    if !token_ok(ctx.config.token.as_deref(), presented.as_deref()) {
        return Err(refuse(401, "unauthorized", "A valid token is required."));
    }
    // The slot itself is taken at `hello` (hub.rs); this only spares a
    // handshake that could not end in one.
    if ctx.hub.connected_count() >= ctx.config.limits.max_ws_clients {
        return Err(refuse(503, "too_many_clients", "Too many plugin connections."));
    }
    Ok(())
}

/// Step 3: the upgrade's own fields.
fn upgrade_fields(headers: &[(&str, &str)]) -> Result<String, Refusal> {
    let has_token = |name: &str, token: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Refusal {
            headers: &[("Upgrade", "websocket")],
            ..refuse(
                426,
                "upgrade_required",
                "This is the plugin WebSocket endpoint; connect with a WebSocket client.",
            )
        });
    }
    if field(headers, "sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal {
            headers: &[("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")],
            ..refuse(426, "unsupported_version", "Only WebSocket version 13 is spoken here.")
        });
    }
    let keys: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-key"))
        .map(|(_, v)| v.trim())
        .collect();
    match keys.as_slice() {
        [key] if valid_key(key) => Ok(tungstenite::handshake::derive_accept_key(key.as_bytes())),
        _ => Err(refuse(400, "invalid_request", "Sec-WebSocket-Key must be one base64 value of 16 bytes.")),
    }
}

/// Base64 of 16 bytes: 22 characters and `==`.
fn valid_key(key: &str) -> bool {
    key.len() == 24
        && key.ends_with("==")
        && key[..22].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// Writes the refusal, then half-closes and drains briefly so the client
/// reads it rather than a reset.
fn answer(tcp: &TcpStream, refusal: &Refusal) {
    let body =
        json!({ "ok": false, "error": { "code": refusal.code, "message": refusal.message } }).to_string();
    let reason = tungstenite::http::StatusCode::from_u16(refusal.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut text = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        refusal.status,
        body.len()
    );
    for (name, value) in refusal.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(&body);
    if (&*tcp).write_all(text.as_bytes()).is_ok() {
        linger(tcp, LINGER);
    }
}

/// Half-closes `tcp` and discards what the peer still sends, until it
/// closes too or `wait` passes, so unread input does not turn the close
/// into a reset that destroys what was just written.
pub(super) fn linger(tcp: &TcpStream, wait: Duration) {
    if tcp.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let until = Instant::now() + wait;
    let mut sink = [0u8; 4096];
    let mut budget = 256 * 1024;
    while budget > 0 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || tcp.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*tcp).read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => budget -= n.min(budget),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_upgrade_fields() {
        assert!(valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in ["", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=x", "dGhlIHNhbXBsZSBub25j!Q=="] {
            assert!(!valid_key(bad), "{bad}");
        }
        let good = [
            ("Upgrade", "WebSocket"),
            ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        // RFC 6455's own example.
        assert_eq!(upgrade_fields(&good).ok().as_deref(), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let status = |h: &[(&str, &str)]| upgrade_fields(h).err().map(|r| r.status);
        assert_eq!(status(&good[1..]), Some(426), "no Upgrade");
        assert_eq!(status(&[good[0], good[1], ("Sec-WebSocket-Version", "8"), good[3]]), Some(426));
        assert_eq!(status(&good[..3]), Some(400), "no key");
        assert_eq!(status(&[good[0], good[1], good[2], good[3], good[3]]), Some(400), "two keys");
    }
}
