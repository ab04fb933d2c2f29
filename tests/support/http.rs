//! A tiny blocking HTTP/1.1 client: one request per connection or kept
//! alive, `Content-Length` and chunked answers, and the JSON envelope.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::HTTP_TIMEOUT;

// ---------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client
// ---------------------------------------------------------------------------
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response {} is not JSON ({e}): {}", self.status, self.text()))
    }

    /// `data` of a success envelope; panics unless status 200 and ok.
    pub fn data(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {}: {}", self.status, self.text());
        let v = self.json();
        assert_eq!(v["ok"], true, "{v}");
        v["data"].clone()
    }

    /// `error` of an error envelope, after checking the status and the code.
    pub fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "expected {status} {code}, got {}: {}", self.status, self.text());
        let v = self.json();
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(v["error"].get("details").is_some(), "details always present: {v}");
        v["error"].clone()
    }
}

/// One request on a fresh connection; panics on I/O errors.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    try_request(addr, method, path, headers, body, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr} failed: {e}"))
}

/// One request on a fresh connection (`Connection: close`).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        if !has("content-length") && !has("transfer-encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    // The server may answer (413) and close before reading everything we
    // send; a failed write is not the end if an answer is waiting.
    let write_result = stream.write_all(&bytes);
    match read_response(&mut stream, method == "HEAD", timeout) {
        Ok(resp) => Ok(resp),
        Err(read_err) => Err(write_result.err().unwrap_or(read_err)),
    }
}

/// Reads one response from a stream (skipping `1xx` interim responses).
pub fn read_response(stream: &mut TcpStream, head_request: bool, timeout: Duration) -> io::Result<Resp> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut eof = false;
    loop {
        match parse_response(&buf, eof, head_request) {
            Parsed::Done(resp, _) => return Ok(resp),
            Parsed::Bad(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            Parsed::Incomplete if eof => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("incomplete response: {:?}", String::from_utf8_lossy(&buf)),
                ))
            }
            Parsed::Incomplete => {}
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "response deadline passed"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset after the response arrived completely is harmless; one
            // before it means there is no (complete) answer.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !buf.is_empty() => eof = true,
            Err(e) => return Err(e),
        }
    }
}

pub enum Parsed {
    Incomplete,
    /// The response and the number of bytes it used.
    Done(Resp, usize),
    Bad(String),
}

/// Parses the first final response in `buf`. `eof`: no more bytes will come
/// (ends a body delimited by the connection close).
pub fn parse_response(buf: &[u8], eof: bool, head_request: bool) -> Parsed {
    let mut start = 0;
    loop {
        let Some(end) = find(&buf[start..], b"\r\n\r\n") else {
            return Parsed::Incomplete;
        };
        let head = String::from_utf8_lossy(&buf[start..start + end]).into_owned();
        let body_start = start + end + 4;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Parsed::Bad(format!("bad status line {status_line:?}"));
        }
        let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
            return Parsed::Bad(format!("bad status line {status_line:?}"));
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if (100..200).contains(&status) {
            start = body_start;
            continue;
        }
        let get =
            |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let rest = &buf[body_start..];
        if head_request || status == 204 || status == 304 {
            return Parsed::Done(Resp { status, headers, body: Vec::new() }, body_start);
        }
        if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
            return match decode_chunked(rest) {
                Ok(Some((body, used))) => Parsed::Done(Resp { status, headers, body }, body_start + used),
                Ok(None) => Parsed::Incomplete,
                Err(why) => Parsed::Bad(why),
            };
        }
        if let Some(len) = get("content-length") {
            let Ok(len) = len.parse::<usize>() else {
                return Parsed::Bad(format!("bad content-length {len:?}"));
            };
            if rest.len() < len {
                return Parsed::Incomplete;
            }
            return Parsed::Done(Resp { status, headers, body: rest[..len].to_vec() }, body_start + len);
        }
        if eof {
            return Parsed::Done(Resp { status, headers, body: rest.to_vec() }, buf.len());
        }
        return Parsed::Incomplete;
    }
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends arbitrary bytes on a fresh connection and reads until the peer
/// closes, the connection fails or `timeout` passes.
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    let deadline = Instant::now() + timeout;
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    out
}

/// Sends arbitrary bytes on a fresh connection and reads just the first
/// complete response; panics if none arrives before the peer closes or
/// `timeout` passes.
pub fn raw_response(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Resp {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.write_all(bytes);
    match read_response(&mut stream, false, timeout) {
        Ok(resp) => resp,
        Err(e) => panic!("no response to {:?}: {e}", String::from_utf8_lossy(&bytes[..bytes.len().min(80)])),
    }
}

/// Parses the first response of what `raw` returned; panics if there is none.
pub fn first_response(bytes: &[u8]) -> Resp {
    match parse_response(bytes, true, false) {
        Parsed::Done(resp, _) => resp,
        Parsed::Incomplete => panic!("no complete response in {:?}", String::from_utf8_lossy(bytes)),
        Parsed::Bad(why) => panic!("bad response ({why}): {:?}", String::from_utf8_lossy(bytes)),
    }
}
