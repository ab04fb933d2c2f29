//! `http`: callers that each keep one connection to the daemon and send
//! the same request, reading each answer whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use super::load::Caller;
use super::ANSWER_TIMEOUT;

pub(super) struct HttpCaller {
    addr: String,
    request: Vec<u8>,
    conn: Option<BufReader<TcpStream>>,
    body: Vec<u8>,
}

impl HttpCaller {
    pub(super) fn new(base: &str, path: &str, body: &str) -> HttpCaller {
        let addr = base.strip_prefix("http://").unwrap_or(base).trim_end_matches('/').to_string();
        let request = if body == "-" {
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
        } else {
            format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        HttpCaller { addr, request, conn: None, body: Vec::with_capacity(4096) }
    }

    fn connect(&mut self) -> Result<&mut BufReader<TcpStream>, String> {
        if self.conn.is_none() {
            let s = TcpStream::connect(&self.addr).map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).ok();
            s.set_read_timeout(Some(ANSWER_TIMEOUT)).ok();
            self.conn = Some(BufReader::with_capacity(16 * 1024, s));
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    fn round_trip(&mut self) -> Result<(u16, bool), String> {
        let request = std::mem::take(&mut self.request);
        let mut body = std::mem::take(&mut self.body);
        let result = (|| {
            let conn = self.connect()?;
            conn.get_mut().write_all(&request).map_err(|e| format!("write: {e}"))?;
            read_response(conn, &mut body)
        })();
        self.request = request;
        self.body = body;
        result
    }
}

/// Reads one response; returns its status and whether the server closes.
fn read_response(conn: &mut BufReader<TcpStream>, body: &mut Vec<u8>) -> Result<(u16, bool), String> {
    let mut line = String::new();
    let mut status = 0u16;
    let mut length: Option<usize> = None;
    let mut close = false;
    let mut first = true;
    loop {
        line.clear();
        let n = conn.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        let l = line.trim_end();
        if first {
            status =
                l.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or(format!("bad status line {l:?}"))?;
            first = false;
            continue;
        }
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let k = k.trim().to_ascii_lowercase();
            if k == "content-length" {
                length = v.trim().parse().ok();
            } else if k == "connection" && v.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let length = length.ok_or("response without Content-Length")?;
    body.resize(length, 0);
    conn.read_exact(body).map_err(|e| format!("read body: {e}"))?;
    Ok((status, close))
}

impl Caller for HttpCaller {
    fn call(&mut self) -> Result<(), String> {
        match self.round_trip() {
            Ok((200, close)) => {
                if close {
                    self.conn = None;
                }
                Ok(())
            }
            Ok((status, _)) => {
                let text = String::from_utf8_lossy(&self.body).chars().take(300).collect::<String>();
                Err(format!("HTTP {status}: {text}"))
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}
