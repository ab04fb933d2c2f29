//! [`Sse`]: a streaming HTTP/1.1 POST that hands out server-sent events as
//! they arrive (the raw relay's `stream: true` answer), or the whole body
//! of a non-stream answer. Every wait is a read with a deadline.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
    /// When the test read it.
    pub at: Instant,
}

/// A POST whose response is read incrementally: `status`/`headers` once the
/// head arrived, then events (chunked `text/event-stream`) one by one, or
/// the whole body for a non-stream answer.
pub struct Sse {
    tcp: TcpStream,
    buf: Vec<u8>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    content_length: Option<usize>,
    /// Decoded body bytes not yet turned into events.
    body: Vec<u8>,
    /// The terminating chunk (or EOF) was seen.
    pub finished: bool,
}

impl Sse {
    /// Sends `POST path` with a JSON body and waits (at most `timeout`) for
    /// the response head.
    pub fn post(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
        timeout: Duration,
    ) -> Sse {
        let mut sse = Sse::send(addr, path, headers, body);
        sse.head(timeout);
        sse
    }

    /// Sends `POST path` with a JSON body without waiting for anything; call
    /// `head` before reading events (the relay sends its head only once the
    /// plugin's first frame arrived).
    pub fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> Sse {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        let body = body.to_string();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        tcp.write_all(head.as_bytes()).expect("write head");
        tcp.write_all(body.as_bytes()).expect("write body");
        Sse {
            tcp,
            buf: Vec::new(),
            status: 0,
            headers: Vec::new(),
            chunked: false,
            content_length: None,
            body: Vec::new(),
            finished: false,
        }
    }

    /// Waits (at most `timeout`) for the response head; returns the status.
    pub fn head(&mut self, timeout: Duration) -> u16 {
        if self.status == 0 {
            self.read_head(timeout);
        }
        self.status
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Reads more bytes (until `deadline`); false on EOF or timeout.
    fn fill(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = self.tcp.set_read_timeout(Some(left));
        let mut chunk = [0u8; 16 * 1024];
        match self.tcp.read(&mut chunk) {
            Ok(0) => {
                self.finished = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => false,
            Err(_) => {
                self.finished = true;
                false
            }
        }
    }

    fn read_head(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status_line = lines.next().unwrap_or_default();
                self.status = status_line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
                self.headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                self.chunked = self
                    .header("transfer-encoding")
                    .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                self.content_length = self.header("content-length").and_then(|l| l.parse().ok());
                return;
            }
            if !self.fill(deadline) {
                panic!("no response head within {timeout:?}: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Moves complete chunks from `buf` to `body`.
    fn decode(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.buf);
            return;
        }
        loop {
            let Some(line_end) = find(&self.buf, b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                self.finished = true;
                self.buf.clear();
                return;
            }
            if self.buf.len() < line_end + 2 + size + 2 {
                return;
            }
            let start = line_end + 2;
            self.body.extend_from_slice(&self.buf[start..start + size]);
            self.buf.drain(..start + size + 2);
        }
    }

    /// The next event within `timeout`, or `None` when the stream ended or
    /// nothing arrived in time.
    pub fn next_event(&mut self, timeout: Duration) -> Option<SseEvent> {
        self.head(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            if let Some(end) = find(&self.body, b"\n\n") {
                let block = String::from_utf8_lossy(&self.body[..end]).into_owned();
                self.body.drain(..end + 2);
                let mut event = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if !data.is_empty() {
                            data.push('\n');
                        }
                        data.push_str(v.trim_start());
                    }
                }
                let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(SseEvent { event, data, at: Instant::now() });
            }
            if self.finished || !self.fill(deadline) {
                return None;
            }
        }
    }

    /// Every remaining event until the stream ends (at most `timeout`).
    pub fn rest(&mut self, timeout: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(e) = self.next_event(deadline.saturating_duration_since(Instant::now())) {
            out.push(e);
        }
        out
    }

    /// The socket, for a test that reads what is left itself (bytes
    /// already taken from it stay behind).
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// The whole body of a non-stream answer, as JSON.
    pub fn json(&mut self, timeout: Duration) -> Value {
        self.head(timeout);
        let deadline = Instant::now() + timeout;
        loop {
            self.decode();
            let complete = match self.content_length {
                Some(len) => self.body.len() >= len,
                None => self.finished,
            };
            if complete {
                return serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                    panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
                });
            }
            if self.finished || !self.fill(deadline) {
                self.decode();
                let complete = match self.content_length {
                    Some(len) => self.body.len() >= len,
                    None => self.finished,
                };
                if !complete {
                    panic!("incomplete body: {:?}", String::from_utf8_lossy(&self.body));
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
