//! Request-head parsing (delegated to `httparse`, never by hand) and the
//! framing rules derived from the headers: body length, chunked coding,
//! keep-alive and `Expect: 100-continue`. Ambiguous framing is rejected
//! rather than guessed, because a guess is how request smuggling starts.

use super::TransportError;

/// How the request body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
}

/// An owned request head with its derived framing facts.
#[derive(Debug)]
pub(super) struct Head {
    pub method: String,
    pub target: String,
    pub http10: bool,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
}

pub(super) enum Parsed {
    /// A full head and the number of buffer bytes it occupied.
    Complete(Head, usize),
    /// More bytes are needed.
    Partial,
}

/// Header slots `parse_head` keeps on the stack (the server's default limit).
const STACK_SLOTS: usize = 64;

/// Parses the head at the start of `buf`, enforcing the size and
/// header-count limits.
pub(super) fn parse_head(buf: &[u8], max_headers: usize, max_bytes: usize) -> Result<Parsed, TransportError> {
    // On the stack when they fit: a 2 KiB allocation per request was a
    // measurable share of a cached read (glibc consolidates its free chunks
    // on every allocation that large).
    let mut stack = [httparse::EMPTY_HEADER; STACK_SLOTS];
    let mut heap;
    let slots = if max_headers <= STACK_SLOTS {
        &mut stack[..max_headers]
    } else {
        heap = vec![httparse::EMPTY_HEADER; max_headers];
        &mut heap[..]
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n > max_bytes => Err(TransportError::HeadersTooLarge),
        Ok(httparse::Status::Complete(n)) => Ok(Parsed::Complete(build_head(&req)?, n)),
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => Err(TransportError::HeadersTooLarge),
        Ok(httparse::Status::Partial) => Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => Err(TransportError::HeadersTooLarge),
        Err(err) => Err(bad(&format!("malformed request head: {err}"))),
    }
}

fn build_head(req: &httparse::Request<'_, '_>) -> Result<Head, TransportError> {
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("incomplete request line"));
    };
    let http10 = version == 0;
    // RFC 9112 §3.2: exactly one Host in HTTP/1.1; never two in any version.
    match req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("host")).count() {
        0 if !http10 => return Err(bad("missing Host header")),
        0 | 1 => {}
        _ => return Err(bad("more than one Host header")),
    }
    let tokens = connection_tokens(req.headers);
    let keep_alive = if http10 { tokens.keep_alive && !tokens.close } else { !tokens.close };
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let target = origin_form(target, &mut headers)?;
    Ok(Head {
        method: method.to_string(),
        target,
        http10,
        headers,
        framing: framing(req.headers)?,
        keep_alive,
        expect_continue: !http10 && expects_continue(req.headers),
    })
}

/// The request target in origin form (`/path?query`). An absolute-form
/// target (`http://host:port/path`, RFC 9112 §3.2.2) is taken apart: its
/// authority replaces the `Host` field, which the origin server must then
/// ignore, so the Host check sees the name the request really names. Any
/// other form (`*`, `host:port`) is not a request this server serves.
fn origin_form(target: &str, headers: &mut Vec<(String, String)>) -> Result<String, TransportError> {
    if target.starts_with('/') {
        return Ok(target.to_string());
    }
    let scheme_end = target.find("://").ok_or_else(|| bad("request target must be a path or an http URI"))?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad("request target must be a path or an http URI"));
    }
    let rest = &target[scheme_end + 3..];
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("the request target's authority must be a host (and port) without user info"));
    }
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("host"));
    headers.push(("Host".to_string(), authority.to_string()));
    Ok(if path.starts_with('/') { path.to_string() } else { format!("/{path}") })
}

/// Derives the body framing. Both `Transfer-Encoding` and `Content-Length`,
/// conflicting lengths, or a transfer coding other than plain `chunked` are
/// all rejected.
fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, TransportError> {
    let mut length: Option<u64> = None;
    let mut encoded = false;
    let mut chunked = false;
    for header in headers {
        if header.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(header.value).ok_or_else(|| bad("invalid Content-Length"))?;
            if length.is_some_and(|previous| previous != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            for coding in tokens(header.value) {
                if chunked || !coding.eq_ignore_ascii_case(b"chunked") {
                    return Err(bad("unsupported Transfer-Encoding"));
                }
                chunked = true;
            }
        }
    }
    match (encoded, chunked, length) {
        (true, _, Some(_)) => Err(bad("both Transfer-Encoding and Content-Length")),
        (true, false, None) => Err(bad("unsupported Transfer-Encoding")),
        (true, true, None) => Ok(Framing::Chunked),
        (false, _, Some(0)) | (false, _, None) => Ok(Framing::Empty),
        (false, _, Some(n)) => Ok(Framing::Length(n)),
    }
}

/// `1*DIGIT` only; `u64::from_str` alone would also accept a leading `+`.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[derive(Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
}

fn connection_tokens(headers: &[httparse::Header<'_>]) -> ConnectionTokens {
    let mut found = ConnectionTokens::default();
    for header in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("connection")) {
        for token in tokens(header.value) {
            found.close |= token.eq_ignore_ascii_case(b"close");
            found.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
        }
    }
    found
}

fn expects_continue(headers: &[httparse::Header<'_>]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("expect") && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
    })
}

/// The non-empty, trimmed elements of a comma-separated header value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// Parses a chunk-size line (extensions after `;` are ignored). More than 16
/// hex digits cannot be a size we would accept anyway.
pub(super) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    if size.is_empty() || size.len() > 16 || !size.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(size).ok()?, 16).ok()
}

fn bad(message: &str) -> TransportError {
    TransportError::BadRequest(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, TransportError> {
        match parse_head(raw.as_bytes(), 64, 16 * 1024)? {
            Parsed::Complete(head, n) => {
                assert_eq!(n, raw.len());
                Ok(head)
            }
            Parsed::Partial => panic!("partial"),
        }
    }

    #[test]
    fn framing_rules() {
        let h = head("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        let h = head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        for raw in [
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert!(matches!(head(raw), Err(TransportError::BadRequest(_))), "{raw}");
        }
    }

    #[test]
    fn host_rules() {
        let reason = |raw: &str| match head(raw) {
            Err(TransportError::BadRequest(why)) => why,
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(reason("GET / HTTP/1.1\r\n\r\n"), "missing Host header");
        assert_eq!(reason("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), "more than one Host header");
        assert_eq!(reason("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), "more than one Host header");
        assert!(head("GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(head("GET / HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
    }

    #[test]
    fn absolute_form_targets_name_the_host() {
        let h = head("GET http://127.0.0.1:4317/v1/system?x=1 HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(h.target, "/v1/system?x=1");
        let hosts: Vec<_> = h.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("host")).collect();
        assert_eq!(hosts, [&("Host".to_string(), "127.0.0.1:4317".to_string())]);
        assert_eq!(head("GET HTTP://localhost HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().target, "/");
        assert_eq!(head("GET http://localhost?q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().target, "/?q");
        for raw in [
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET localhost:80 HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET ftp://h/x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://u@h/x HTTP/1.1\r\nHost: a\r\n\r\n",
            // Still one Host required in HTTP/1.1 (RFC 9112 §3.2).
            "GET http://h/x HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(head(raw), Err(TransportError::BadRequest(_))), "{raw}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, close\r\n\r\n").unwrap().keep_alive);
    }

    #[test]
    fn limits() {
        let big = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}", "a".repeat(100));
        assert!(matches!(parse_head(big.as_bytes(), 64, 64), Err(TransportError::HeadersTooLarge)));
        let many = format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "A: b\r\n".repeat(3));
        assert!(matches!(parse_head(many.as_bytes(), 2, 1024), Err(TransportError::HeadersTooLarge)));
        // The limit holds on both sides of the slots kept on the stack.
        for limit in [STACK_SLOTS, STACK_SLOTS + 8] {
            let fits = format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "A: b\r\n".repeat(limit - 1));
            assert!(
                matches!(parse_head(fits.as_bytes(), limit, 1 << 20), Ok(Parsed::Complete(..))),
                "{limit}"
            );
            let over = format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", "A: b\r\n".repeat(limit));
            assert!(matches!(
                parse_head(over.as_bytes(), limit, 1 << 20),
                Err(TransportError::HeadersTooLarge)
            ));
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"A;name=value"), Some(10));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"-1"), None);
        assert_eq!(parse_chunk_size(b"+1"), None);
        assert_eq!(parse_chunk_size(b"11111111111111111"), None);
    }
}
