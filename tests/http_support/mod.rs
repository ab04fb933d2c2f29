//! The HTTP transport tests' server and raw client (`tests/http_transport.rs`,
//! `tests/http_resources.rs`): a test handler (echo, panic, stream, slow)
//! on `baa_conductor::http::server`, and a client on plain `TcpStream`s so
//! that every byte on the wire is under the test's control.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use baa_conductor::http::server::{
    Body, BodyError, Handler, Request, Response, Server, ServerConfig, TransportError,
};

// ---------------------------------------------------------------------------
// Test handler and server setup
// ---------------------------------------------------------------------------

/// Echoes `METHOD TARGET BODY-LEN`; `/echo` returns the body itself,
/// `/panic` panics, `/stream` streams three chunks, `/slow` sleeps 300 ms.
#[derive(Default)]
pub struct TestHandler {
    pub slow_started: AtomicUsize,
}

pub fn text(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".to_string(), "text/plain".to_string())],
        body: Body::Full(body.into().into_bytes()),
        close: false,
    }
}

impl Handler for TestHandler {
    fn handle(&self, req: Request) -> Response {
        let body = match req.body {
            Ok(ref body) => body,
            Err(BodyError::TooLarge) => return text(413, "too large"),
        };
        match req.target.as_str() {
            "/panic" => panic!("test handler panics on purpose"),
            "/echo" => text(200, String::from_utf8_lossy(body)),
            "/slow" => {
                self.slow_started.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(300));
                text(200, "slow done")
            }
            "/stream" => stream_response(),
            _ => text(200, format!("{} {} {}", req.method, req.target, body.len())),
        }
    }

    fn transport_error(&self, err: TransportError) -> Response {
        match err {
            TransportError::BadRequest(message) => text(400, message),
            TransportError::HeadersTooLarge => text(431, "headers too large"),
            TransportError::Internal => text(500, "internal"),
        }
    }

    fn overloaded(&self) -> Response {
        text(503, "overloaded")
    }
}

pub fn stream_response() -> Response {
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        for part in ["one", "two", "three"] {
            if tx.send(part.as_bytes().to_vec()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    Response {
        status: 200,
        headers: vec![("Content-Type".to_string(), "text/event-stream".to_string())],
        body: Body::Stream(rx),
        close: false,
    }
}

pub fn start(config: ServerConfig) -> (Server, Arc<TestHandler>) {
    init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let handler = Arc::new(TestHandler::default());
    let server = Server::start(listener, config, handler.clone()).expect("start server");
    (server, handler)
}

/// Warnings and errors go to stderr (captured per test by libtest).
pub struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

pub static LOGGER: StderrLogger = StderrLogger;

pub fn init_logging() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

// ---------------------------------------------------------------------------
// Raw client helpers
// ---------------------------------------------------------------------------

/// A parsed response; `chunks` lists the wire chunks of a chunked body.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunks: Vec<Vec<u8>>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects with a 5 s read timeout so a broken server fails a test instead
/// of hanging it.
pub fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    BufReader::new(stream)
}

pub fn send(client: &mut BufReader<TcpStream>, raw: &str) {
    client.get_mut().write_all(raw.as_bytes()).expect("write request");
}

pub fn get_request(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

pub fn read_line(r: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<Resp> {
    let status_line = read_line(r)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut resp = Resp { status, headers, body: Vec::new(), chunks: Vec::new() };
    if resp.header("transfer-encoding") == Some("chunked") {
        read_chunks(r, &mut resp)?;
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

pub fn read_chunks(r: &mut BufReader<TcpStream>, resp: &mut Resp) -> io::Result<()> {
    loop {
        let size_line = read_line(r)?;
        let size = usize::from_str_radix(size_line.trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, size_line.clone()))?;
        if size == 0 {
            while !read_line(r)?.is_empty() {}
            return Ok(());
        }
        let mut chunk = vec![0; size];
        r.read_exact(&mut chunk)?;
        assert_eq!(read_line(r)?, "", "chunk not followed by CRLF");
        resp.body.extend_from_slice(&chunk);
        resp.chunks.push(chunk);
    }
}

/// One request on a fresh connection.
pub fn get(addr: SocketAddr, target: &str) -> Resp {
    let mut client = connect(addr);
    send(&mut client, &get_request(target));
    read_response(&mut client).expect("response")
}

/// Waits for the server to close the connection (EOF or reset, not a read
/// timeout) and returns how long that took.
pub fn time_until_closed(client: &mut BufReader<TcpStream>, limit: Duration) -> Duration {
    let start = Instant::now();
    client.get_ref().set_read_timeout(Some(limit)).expect("timeout");
    let mut sink = [0u8; 1024];
    loop {
        match client.read(&mut sink) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    condition()
}

pub fn short_timeouts() -> ServerConfig {
    ServerConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}
