//! Helpers of the plugin-bridge tests (`tests/bridge_*.rs`) built on the
//! daemon and the WebSocket client: the `/v1/browser` view, one client's
//! entry in it, an introduced client, and a POST on its own thread (so a
//! test can act as the plugin while the HTTP call waits).

#![allow(dead_code)]

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ws::{connect, WsClient};
use super::{try_request, Daemon, Resp};

/// `GET /v1/browser`'s data.
pub fn browser(d: &Daemon) -> Value {
    d.get("/v1/browser").data()
}

/// The entry of `client_id` in `/v1/browser`'s `clients`, if any.
pub fn client_view(d: &Daemon, client_id: &str) -> Option<Value> {
    browser(d)["clients"].as_array().unwrap().iter().find(|c| c["client_id"] == client_id).cloned()
}

/// An introduced client.
pub fn hello(d: &Daemon, client_id: &str, platforms: &[&str]) -> WsClient {
    let mut c = connect(&d.ws_url(), &[]);
    c.hello(client_id, platforms);
    c
}

/// POSTs a JSON `body` on its own thread, with a read deadline of `timeout`;
/// the handle gives the response and how long it took.
pub fn post_in_thread(
    d: &Daemon,
    path: &str,
    body: Value,
    timeout: Duration,
) -> JoinHandle<(Resp, Duration)> {
    let addr = d.addr;
    let path = path.to_string();
    std::thread::spawn(move || {
        let started = Instant::now();
        let body = body.to_string();
        let resp = try_request(
            addr,
            "POST",
            &path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
            timeout,
        )
        .expect("POST");
        (resp, started.elapsed())
    })
}
