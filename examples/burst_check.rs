//! The HTTP transport's first robustness check, as a standalone probe so
//! it can be pointed at any server: N keep-alive clients connect at the same
//! instant (behind a barrier) and each sends two requests on its connection;
//! a client counts as served when both answers arrive within 1 s. Used to
//! record the before/after figures of docs/HTTP_SERVER.md (tiny_http 0.12's
//! pool strands such bursts; our transport must not).
//!
//! Usage: cargo run --release --example burst_check -- HOST:PORT PATH [CLIENTS] [TRIES]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: burst_check HOST:PORT PATH [CLIENTS] [TRIES]");
        std::process::exit(2);
    }
    let addr = args[0].clone();
    let path = args[1].clone();
    let clients: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(32);
    let tries: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(3);
    for attempt in 1..=tries {
        let served = burst(&addr, &path, clients);
        println!("try {attempt}: {served} of {clients} clients got both answers within 1 s");
    }
}

fn burst(addr: &str, path: &str, clients: usize) -> usize {
    let start = Arc::new(Barrier::new(clients));
    let end = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (start, end, addr, path) = (start.clone(), end.clone(), addr.to_string(), path.to_string());
            std::thread::spawn(move || {
                start.wait();
                let (ok, stream) = two_answers(&addr, &path).unwrap_or((false, None));
                // Keep-alive clients keep their connection open until every
                // client is done, as a browser or a pooled script would; a
                // server must not need one connection to close to serve another.
                end.wait();
                drop(stream);
                ok
            })
        })
        .collect();
    handles.into_iter().filter_map(|h| h.join().ok()).filter(|ok| *ok).count()
}

/// Two requests on one keep-alive connection, both answered within 1 s.
/// Returns the verdict and the still-open connection.
fn two_answers(addr: &str, path: &str) -> std::io::Result<(bool, Option<TcpStream>)> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut stream = TcpStream::connect(addr)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    for _ in 0..2 {
        stream.write_all(request.as_bytes())?;
        if !read_response(&mut stream, deadline)? {
            return Ok((false, Some(stream)));
        }
    }
    Ok((true, Some(stream)))
}

/// Reads one response with a Content-Length body before the deadline.
fn read_response(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<bool> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return Ok(true);
            }
        }
    }
}
