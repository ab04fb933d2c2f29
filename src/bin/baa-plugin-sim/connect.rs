//! Opening the WebSocket: our own TCP connect (so the session owns a plain
//! `TcpStream` and can set read timeouts on it), then tungstenite's client
//! handshake with the auth and origin headers.

use crate::cli::Options;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Request;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::header::{HeaderName, HeaderValue, AUTHORIZATION, ORIGIN};
use tungstenite::{Error, WebSocket};

/// Bounds both the TCP connect and the HTTP upgrade: a daemon that accepts
/// but never answers must not hang a test forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn connect(opts: &Options) -> Result<WebSocket<TcpStream>, String> {
    let request = build_request(opts)?;
    let stream = open_tcp(&request)?;
    // Nagle would hold back small answers while the daemon waits for them.
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(|e| format!("cannot set a read timeout: {e}"))?;
    match tungstenite::client::client_with_config(request, stream, None) {
        Ok((ws, _response)) => Ok(ws),
        Err(HandshakeError::Interrupted(_)) => {
            Err(format!("no WebSocket upgrade answer within {CONNECT_TIMEOUT:?}"))
        }
        Err(HandshakeError::Failure(e)) => Err(describe_failure(e)),
    }
}

fn build_request(opts: &Options) -> Result<Request, String> {
    let mut request =
        opts.url.as_str().into_client_request().map_err(|e| format!("bad --url {}: {e}", opts.url))?;
    if let Some(token) = &opts.token {
        add_header(&mut request, AUTHORIZATION, &format!("Bearer {token}"))?;
    }
    if let Some(origin) = &opts.origin {
        add_header(&mut request, ORIGIN, origin)?;
    }
    Ok(request)
}

fn add_header(request: &mut Request, name: HeaderName, value: &str) -> Result<(), String> {
    let value = HeaderValue::from_str(value).map_err(|_| format!("{name}: not a valid header value"))?;
    request.headers_mut().insert(name, value);
    Ok(())
}

fn open_tcp(request: &Request) -> Result<TcpStream, String> {
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(format!("{uri}: only ws:// URLs are supported (no TLS)"));
    }
    let host = uri.host().ok_or(format!("{uri}: no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let addrs = (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?;
    let mut last = format!("{host}:{port}: no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// A refused upgrade (401 bad token, 403 origin, 404 path) shows its status
/// and body: that is what the person needs to fix the command line.
fn describe_failure(e: Error) -> String {
    match e {
        Error::Http(response) => {
            let body = response.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default();
            format!("WebSocket upgrade refused: HTTP {} {}", response.status(), body.trim())
        }
        other => format!("WebSocket handshake failed: {other}"),
    }
}
