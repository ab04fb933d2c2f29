//! Peers that read slower than the daemon sends (docs/BRIDGE.md, "How
//! frames reach the socket" and "Streams"): a relay's HTTP caller that stops
//! keeping up costs the daemon a bounded buffer, then the relay fails with
//! `caller_too_slow` (a caller that reads nothing at all frees the relay
//! within the send timeout); a plugin that takes its frames only in a trickle is
//! disconnected and shown lost within the documented 10 s. Neither slows
//! any other client down.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baa_conductor::bridge::plugin_answers;
use serde_json::{json, Value};
use support::bridge::{client_view, hello, post_in_thread};
use support::sse::{Sse, SseEvent};
use support::ws::{answer_ok, Plugin, WsClient};
use support::{wait_until, Daemon, DaemonOpts};

const T: Duration = Duration::from_secs(10);

fn start() -> Daemon {
    Daemon::start(DaemonOpts::new().config(support::quiet_timed_jobs()))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A plugin for `claude` with a login state, driven by the test itself.
fn streamer(d: &Daemon, client_id: &str) -> WsClient {
    let mut c = hello(d, client_id, &["claude"]);
    c.login("claude");
    c
}

/// Opens a streamed relay to `client_id` and returns it with the
/// `api_request` the plugin received.
fn open_stream(d: &Daemon, plugin: &mut WsClient, client_id: &str) -> (Sse, String) {
    let body = json!({"platform": "claude", "method": "GET", "path": "/api/stream", "stream": true,
                      "client_id": client_id, "timeout_ms": 60_000});
    let sse = Sse::send(d.addr, "/v1/browser/request", &[], &body);
    let request = plugin.recv_type("api_request", T);
    (sse, request["request_id"].as_str().unwrap().to_string())
}

fn stream_event(request_id: &str, seq: u64, data: &str) -> String {
    plugin_answers::stream_event(request_id, seq, json!(data)).to_string()
}

/// Sends events `from..=to` of `data` each, as fast as the socket takes
/// them, then a ping whose pong proves the daemon has read them all.
fn flood(plugin: &mut WsClient, request_id: &str, from: u64, to: u64, data: &str) {
    for seq in from..=to {
        plugin.send_text(&stream_event(request_id, seq, data));
    }
    plugin.ping();
}

/// Reads the stream on its own thread: a few KiB every 100 ms (a caller
/// far slower than the plugin, but one that does read, so the send timeout
/// never cuts it) until `fast` is set, then everything until the end.
fn trickle(mut sse: Sse, fast: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<SseEvent>> {
    std::thread::spawn(move || {
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while !fast.load(Ordering::SeqCst) && Instant::now() < deadline {
            // Pacing a slow reader, not waiting for a condition.
            std::thread::sleep(Duration::from_millis(100));
            events.extend(sse.next_event(T));
        }
        events.extend(sse.rest(Duration::from_secs(60)));
        events
    })
}

#[test]
fn a_relay_whose_caller_falls_behind_is_bounded_in_memory_then_fails_with_caller_too_slow() {
    let d = start();
    let mut plugin = streamer(&d, "fast-streamer");
    let (mut sse, request_id) = open_stream(&d, &mut plugin, "fast-streamer");
    let data = "x".repeat(8 * 1024);
    plugin.send_text(&stream_event(&request_id, 1, &data));
    assert_eq!(sse.head(T), 200);
    let first = sse.next_event(T).expect("the first event");
    assert_eq!(first.data["seq"], 1);
    let before = rss_kib(d.pid());
    let fast = Arc::new(AtomicBool::new(false));
    let reader = trickle(sse, fast.clone());
    // 48 MiB of events; the caller reads a few KiB of them meanwhile.
    let last = 6 * 1024;
    flood(&mut plugin, &request_id, 2, last, &data);
    let grew = rss_kib(d.pid()).saturating_sub(before);
    // Everything unread held in memory would be 48 MiB and more.
    assert!(grew < 16 * 1024, "RSS grew by {grew} KiB while 48 MiB of events went unread");
    // Nobody else is slowed down: another plugin's relay, a health check.
    let other = Plugin::start(&d.ws_url(), "other", &["claude"], &["claude"], Some(Box::new(answer_ok)));
    let body = json!({"platform": "claude", "method": "GET", "path": "/x", "client_id": "other"});
    let (resp, took) = post_in_thread(&d, "/v1/browser/request", body, T).join().unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(took < Duration::from_secs(5), "another plugin's relay took {took:?}");
    assert_eq!(d.get("/healthz").status, 200);
    // The caller then reads on: what was kept, then the failure.
    plugin.send_text(&plugin_answers::stream_end(&request_id, last + 1, 200).to_string());
    fast.store(true, Ordering::SeqCst);
    let events = reader.join().unwrap();
    let (end, kept) = events.split_last().expect("events after the first");
    for (i, e) in kept.iter().enumerate() {
        assert_eq!((e.event.as_str(), &e.data["seq"]), ("stream_event", &json!(i + 2)), "event {i}");
    }
    assert!(kept.len() < last as usize - 1, "every event arrived: nothing was cut");
    assert_eq!(end.event, "stream_error", "{:?}", end.data);
    assert_eq!(end.data["code"], "caller_too_slow", "{:?}", end.data);
    assert_eq!(end.data["partial"]["seq"], json!(kept.len() + 1));
    // The plugin was not punished for its caller: it stays connected.
    plugin.ping();
    assert_eq!(client_view(&d, "fast-streamer").unwrap()["status"], "connected");
    drop(other);
}

#[test]
fn a_relay_caller_that_never_reads_frees_its_target_within_the_send_timeout() {
    let d = start();
    let mut plugin = streamer(&d, "unread");
    let (mut sse, request_id) = open_stream(&d, &mut plugin, "unread");
    let data = "y".repeat(8 * 1024);
    plugin.send_text(&stream_event(&request_id, 1, &data));
    assert_eq!(sse.head(T), 200);
    // 16 MiB of events: far more than the socket buffers and the relay's
    // own bound hold, so the daemon's writes to the caller stall.
    flood(&mut plugin, &request_id, 2, 2 * 1024, &data);
    let stalled_at = Instant::now();
    // The stalled relay holds the target's lease; the next relay to the
    // same plugin is admitted once the caller has been cut (10 s send
    // timeout) and the relay ended.
    let body = json!({"platform": "claude", "method": "GET", "path": "/next", "client_id": "unread",
                      "timeout_ms": 40_000});
    let next = post_in_thread(&d, "/v1/browser/request", body, Duration::from_secs(45));
    let request = plugin.recv_type("api_request", Duration::from_secs(30));
    let waited = stalled_at.elapsed();
    assert_eq!(request["path"], "/next");
    assert!(waited < Duration::from_secs(25), "the unread relay held its target for {waited:?}");
    for answer in answer_ok(&request) {
        plugin.send_text(&answer.to_string());
    }
    assert_eq!(next.join().unwrap().0.status, 200);
    // What the caller finds when it looks at last: never a finished
    // stream. Either it was cut short (no terminating chunk): the daemon's
    // writes stalled for the send timeout; or, when the relay's thread was
    // slower to take the events than the plugin to send them (a loaded
    // machine), the relay failed first and its end fit in the socket
    // buffers: then it ends with `caller_too_slow`.
    let mut tcp: TcpStream = sse.into_tcp();
    tcp.set_read_timeout(Some(T)).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(!text.contains("stream_end"), "the stream was finished");
    let cut = !text.ends_with("0\r\n\r\n");
    assert!(
        cut || text.contains("\"caller_too_slow\""),
        "the stream ended otherwise: {}",
        String::from_utf8_lossy(&rest[rest.len().saturating_sub(300)..])
    );
}

/// Whether `client_id` shows as lost in `GET /v1/browser`.
fn shown_lost(d: &Daemon, client_id: &str) -> bool {
    client_view(d, client_id).is_some_and(|c: Value| c["status"] == "lost")
}

/// Reads the socket on its own thread, 8 KiB every 100 ms, until it ends
/// or `stop` is set; returns how many bytes it read.
fn trickle_socket(mut tcp: TcpStream, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8 * 1024];
        let mut total = 0;
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        while !stop.load(Ordering::SeqCst) {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
            // Pacing a slow reader, not waiting for a condition.
            std::thread::sleep(Duration::from_millis(100));
        }
        total
    })
}

#[test]
fn a_plugin_that_takes_its_frames_in_a_trickle_is_marked_lost_within_10_s() {
    // Silence alone would take 120 s to count; the body limit lets one
    // request frame be far larger than the socket buffers.
    let config = json!({"timed_jobs": {"interval_ms": 3_600_000},
                        "bridge": {"client_timeout_ms": 120_000},
                        "limits": {"max_body_bytes": 16 << 20}});
    let d = Daemon::start(DaemonOpts::new().config(config));
    let plugin = streamer(&d, "trickler");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = trickle_socket(plugin.tcp().try_clone().unwrap(), stop.clone());
    // A 12 MiB request: at 80 KiB/s it would take the plugin minutes.
    let body = json!({"platform": "claude", "method": "POST", "path": "/big", "client_id": "trickler",
                      "body": "z".repeat(12 << 20), "timeout_ms": 60_000});
    let sent_at = Instant::now();
    let relay = post_in_thread(&d, "/v1/browser/request", body, Duration::from_secs(70));
    // Another plugin is served meanwhile.
    let mut other = hello(&d, "bystander", &["claude"]);
    other.ping();
    assert!(
        wait_until(Duration::from_secs(25), || shown_lost(&d, "trickler")),
        "the trickling plugin was not marked lost within {:?}",
        sent_at.elapsed()
    );
    let took = sent_at.elapsed();
    assert!(took >= Duration::from_secs(9), "cut after {took:?}: before its 10 s");
    let (resp, _) = relay.join().unwrap();
    resp.error(502, "client_disconnected");
    stop.store(true, Ordering::SeqCst);
    let read = reader.join().unwrap();
    assert!(read > 64 * 1024, "the plugin read only {read} bytes: not a trickle but a stop");
    other.ping();
    assert_eq!(client_view(&d, "bystander").unwrap()["status"], "connected");
    drop(plugin);
}
