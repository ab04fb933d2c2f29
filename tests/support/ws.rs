//! A small blocking WebSocket test client for the plugin bridge, on
//! `tungstenite`. This file connects (with extra headers, an optional
//! `Origin`, or to get the HTTP status of a refused upgrade); the rest is
//! in its submodules, re-exported here so tests name everything
//! `support::ws::…`:
//!
//! - `client`: [`WsClient`], a connection that sends text / binary / raw
//!   frames and receives JSON frames with a deadline, and [`Stalled`], one
//!   that stopped reading to play a hung plugin;
//! - `raw`: WebSocket frames as bytes, for what tungstenite will not send
//!   or hides;
//! - `plugin`: [`Plugin`], a connected client on its own thread that
//!   answers the daemon's requests through a [`Responder`] (the shared
//!   answers of `baa_conductor::bridge::plugin_answers`) or on the test's
//!   command.
//!
//! Nothing here sleeps to synchronise: every wait is a read with a deadline.

#![allow(dead_code)]

mod client;
mod plugin;
mod raw;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue, Uri};
use tungstenite::Error as WsError;

// Each test binary uses a few of these; the rest would be unused imports.
#[allow(unused_imports)]
pub use client::{Event, Stalled, WsClient};
#[allow(unused_imports)]
pub use plugin::{answer_ok, answer_status, Plugin, Received, Responder};
#[allow(unused_imports)]
pub use raw::{masked_frame, parse_server_frames};

/// Default deadline of one expected frame.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection attempt did not give a WebSocket.
#[derive(Debug)]
pub enum ConnectError {
    /// The daemon answered the upgrade with an HTTP error status.
    Refused { status: u16, body: String },
    /// Anything else (connect failure, handshake I/O error, ...).
    Other(String),
}

impl ConnectError {
    /// The refusal's HTTP status; panics for other errors.
    pub fn status(&self) -> u16 {
        match self {
            ConnectError::Refused { status, .. } => *status,
            ConnectError::Other(e) => panic!("expected a refused upgrade, got: {e}"),
        }
    }
}

/// `ws://HOST:PORT/...` → the socket address and a path+query replaced by
/// `path` (when given).
fn with_path(url: &str, path: Option<&str>) -> String {
    match path {
        None => url.to_string(),
        Some(p) => {
            let uri: Uri = url.parse().expect("ws url");
            format!("ws://{}{}", uri.authority().expect("authority"), p)
        }
    }
}

/// The URL of a daemon's bridge with another path (and query), e.g.
/// `/ws/firefox` or `/ws/browser?token=T`.
pub fn url_with_path(url: &str, path_and_query: &str) -> String {
    with_path(url, Some(path_and_query))
}

/// Connects to `url` sending the extra `headers` (e.g. `Authorization`,
/// `Origin`) with the upgrade request.
pub fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, ConnectError> {
    let uri: Uri = url.parse().map_err(|e| ConnectError::Other(format!("bad url {url}: {e}")))?;
    let authority =
        uri.authority().ok_or_else(|| ConnectError::Other(format!("no authority in {url}")))?.to_string();
    let addr: SocketAddr =
        authority.parse().map_err(|e| ConnectError::Other(format!("bad address {authority}: {e}")))?;
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| ConnectError::Other(format!("connect {addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| ConnectError::Other(e.to_string()))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10))).map_err(|e| ConnectError::Other(e.to_string()))?;
    let mut request = url.into_client_request().map_err(|e| ConnectError::Other(format!("request: {e}")))?;
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).expect("header name");
        let value = HeaderValue::from_str(v).expect("header value");
        request.headers_mut().append(name, value);
    }
    match tungstenite::client::client_with_config(request, tcp, None) {
        Ok((ws, _resp)) => Ok(WsClient::new(ws, addr)),
        Err(HandshakeError::Failure(WsError::Http(resp))) => Err(ConnectError::Refused {
            status: resp.status().as_u16(),
            body: resp.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default(),
        }),
        Err(HandshakeError::Failure(e)) => Err(ConnectError::Other(format!("handshake: {e}"))),
        Err(HandshakeError::Interrupted(_)) => {
            Err(ConnectError::Other("handshake interrupted (timeout)".into()))
        }
    }
}

/// Connects or panics.
pub fn connect(url: &str, headers: &[(&str, &str)]) -> WsClient {
    try_connect(url, headers).unwrap_or_else(|e| panic!("connect {url}: {e:?}"))
}

/// The HTTP status of a refused upgrade; panics if the upgrade succeeded.
pub fn refused_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    match try_connect(url, headers) {
        Ok(_) => panic!("upgrade to {url} with {headers:?} was accepted, expected a refusal"),
        Err(e) => e.status(),
    }
}
