//! HTTP details a careful client expects: `HEAD` on every `GET` route (the
//! head of the `GET` answer, no body), absolute-form request targets (their
//! authority is the Host, and is checked like one), and artifacts sent in
//! pieces rather than read into memory whole.

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::{message_body, quiet_timed_jobs, raw, Daemon, DaemonOpts};

fn daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()))
}

/// `(status, headers, body)` of one request sent raw with `Connection: close`.
fn exchange(d: &Daemon, method: &str, path: &str) -> (u16, String, Vec<u8>) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nX-Request-Id: same-id\r\nConnection: close\r\n\r\n",
        d.addr
    );
    let bytes = raw(d.addr, request.as_bytes(), Duration::from_secs(10));
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head, bytes[split..].to_vec())
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// A concrete path for a route pattern: known fixtures for its parameters.
fn concrete(pattern: &str, lc: &str, job: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg {
            ":message_id" => "m-1".to_string(),
            ":message_id.txt" => "m-1.txt".to_string(),
            ":local_conversation_id" => lc.to_string(),
            ":job_id" => job.to_string(),
            "*path" => "notes/a.txt".to_string(),
            s if s.starts_with(':') => "unknown-id".to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn head_answers_every_get_route_with_the_get_head_and_no_body() {
    let d = daemon();
    let ingested = d.post_json("/v1/messages", &message_body("chatgpt", "c", "m-1", "hello")).data();
    let lc = ingested["local_conversation_id"].as_str().unwrap().to_string();
    support::seed_job(&d.db_path(), &support::JobSeed::new("job-1", "pending"));
    fs::create_dir_all(d.state_dir().join("artifacts/notes")).unwrap();
    fs::write(d.state_dir().join("artifacts/notes/a.txt"), "an artifact").unwrap();
    // Bodies that change between two requests (uptime, gauges): the length
    // may differ by a few bytes; everything else must match exactly.
    let volatile = ["/metrics", "/v1/system", "/v1/timed-jobs", "/v1/browser", "/v1/openapi.json"];
    let routes: Vec<Value> = d.get("/v1/describe").data()["routes"].as_array().unwrap().clone();
    let gets: Vec<&Value> = routes.iter().filter(|r| r["method"] == "GET").collect();
    assert!(gets.len() >= 15, "{gets:?}");
    for route in gets {
        let path = concrete(route["path"].as_str().unwrap(), &lc, "job-1");
        let (get_status, get_head, get_body) = exchange(&d, "GET", &path);
        let (status, head, body) = exchange(&d, "HEAD", &path);
        assert_eq!(status, get_status, "HEAD {path}: {head}");
        assert!(body.is_empty(), "HEAD {path} sent a body: {:?}", String::from_utf8_lossy(&body));
        assert_eq!(header(&head, "content-type"), header(&get_head, "content-type"), "{path}");
        let length: usize = header(&head, "content-length")
            .unwrap_or_else(|| panic!("HEAD {path} has no Content-Length: {head}"))
            .parse()
            .unwrap();
        if volatile.contains(&path.as_str()) {
            assert!(length.abs_diff(get_body.len()) < 64, "HEAD {path}: {length} vs {}", get_body.len());
        } else {
            assert_eq!(length, get_body.len(), "HEAD {path}");
        }
    }
    // Open routes need no token for HEAD either; Allow names HEAD.
    let (status, head, _) = exchange(&d, "DELETE", "/v1/messages");
    assert_eq!(status, 405);
    assert_eq!(header(&head, "allow").as_deref(), Some("GET, HEAD, POST"));
}

#[test]
fn head_and_get_share_a_keep_alive_connection() {
    let d = daemon();
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = d.addr;
    write!(s, "HEAD /healthz HTTP/1.1\r\nHost: {host}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert_eq!(all.matches("HTTP/1.1 200").count(), 2, "{all}");
    // The first head ends where the second answer begins: no body between.
    let first_end = all.find("\r\n\r\n").unwrap() + 4;
    assert!(all[first_end..].starts_with("HTTP/1.1 200"), "the HEAD answer carried a body: {all}");
    assert!(all.ends_with("\"ok\":true,\"request_id\":\"") || all.contains("\"status\":\"ok\""), "{all}");
}

#[test]
fn an_absolute_form_target_is_served_and_its_authority_is_the_host() {
    let d = daemon();
    let port = d.addr.port();
    let ok = format!("GET http://127.0.0.1:{port}/v1/system?x HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n");
    let resp = support::first_response(&raw(d.addr, ok.as_bytes(), Duration::from_secs(10)));
    // Routed like `/v1/system?x`: the unknown parameter is what is refused.
    assert_eq!(resp.status, 400, "{}", resp.text());
    assert_eq!(resp.json()["error"]["details"]["field"], "x");
    let ok = format!(
        "GET HTTP://localhost:{port}/healthz HTTP/1.1\r\nHost: ignored.example\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(support::first_response(&raw(d.addr, ok.as_bytes(), Duration::from_secs(10))).status, 200);
    // DNS rebinding through the target instead of the Host header.
    let evil =
        b"GET http://attacker.example/v1/messages HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let resp = support::first_response(&raw(d.addr, evil, Duration::from_secs(10)));
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_eq!(resp.json()["error"]["code"], "forbidden_host");
    // Other target forms are not requests this server serves.
    let star = b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(support::first_response(&raw(d.addr, star, Duration::from_secs(10))).status, 400);
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn artifacts_are_sent_in_pieces_not_read_whole() {
    let d = daemon();
    let dir = d.state_dir().join("artifacts");
    // Exact bytes, across piece boundaries.
    let pattern: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8).collect();
    fs::write(dir.join("pattern.bin"), &pattern).unwrap();
    let resp = d.get("/artifact/pattern.bin");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, pattern);
    assert_eq!(resp.header("content-length"), Some("300001"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    // A 256 MiB file (sparse: cheap to make) and four downloads that do not
    // read: read whole, each would take 256 MiB of the daemon's memory.
    let big = fs::File::create(dir.join("big.bin")).unwrap();
    big.set_len(256 << 20).unwrap();
    let before = rss_kib(d.pid());
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(d.addr).unwrap();
            write!(s, "GET /artifact/big.bin HTTP/1.1\r\nHost: {}\r\n\r\n", d.addr).unwrap();
            s
        })
        .collect();
    // Each download has started (its head is out) before memory is read.
    for s in &stalled {
        let mut head = [0u8; 12];
        let mut s = s.try_clone().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
    }
    let grew = rss_kib(d.pid()).saturating_sub(before);
    assert!(grew < 64 * 1024, "RSS grew by {grew} KiB with four stalled 256 MiB downloads");
    // The daemon still answers others meanwhile.
    assert_eq!(d.get("/healthz").status, 200);
    drop(stalled);
}
