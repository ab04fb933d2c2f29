//! A minimal keep-alive HTTP/1.1 client for the load harnesses (chaos,
//! soak): one request at a time on one connection, `Content-Length` and
//! chunked answers, a read timeout on every call, and reconnection when the
//! daemon closed the connection. Included with `#[path]`: each example is a
//! crate of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Client {
    addr: SocketAddr,
    timeout: Duration,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: SocketAddr, timeout: Duration) -> Client {
        Client { addr, timeout, conn: None }
    }

    /// Sends one request; `Err` when no complete answer came (the daemon
    /// died, refused or timed out), else the status and the body.
    pub fn call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Vec<u8>), String> {
        let result = self.try_call(method, path, body);
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    fn try_call(&mut self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, Vec<u8>), String> {
        if self.conn.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
            stream.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
            stream.set_nodelay(true).ok();
            self.conn = Some(BufReader::new(stream));
        }
        let conn = self.conn.as_mut().expect("connected");
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        if let Some(body) = body {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        conn.get_mut().write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let (status, length, chunked, close) = read_head(conn)?;
        let body = if chunked { read_chunked(conn)? } else { read_exact(conn, length.unwrap_or(0))? };
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }
}

fn line(conn: &mut BufReader<TcpStream>) -> Result<String, String> {
    let mut line = String::new();
    match conn.read_line(&mut line) {
        Ok(0) => Err("connection closed".to_string()),
        Ok(_) => Ok(line.trim_end().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn read_head(conn: &mut BufReader<TcpStream>) -> Result<(u16, Option<usize>, bool, bool), String> {
    let status_line = line(conn)?;
    let status = status_line.get(9..12).and_then(|s| s.parse().ok()).ok_or("bad status line")?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        let header = line(conn)?;
        if header.is_empty() {
            return Ok((status, length, chunked, close));
        }
        let (name, value) = header.split_once(':').ok_or("bad header")?;
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
}

fn read_exact(conn: &mut BufReader<TcpStream>, n: usize) -> Result<Vec<u8>, String> {
    let mut body = vec![0; n];
    conn.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(body)
}

fn read_chunked(conn: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let size = usize::from_str_radix(line(conn)?.split(';').next().unwrap_or(""), 16)
            .map_err(|e| e.to_string())?;
        if size == 0 {
            line(conn)?;
            return Ok(body);
        }
        body.extend(read_exact(conn, size)?);
        line(conn)?;
    }
}
