//! Flood checks against the real daemon: with 4,000 silent sockets on the
//! HTTP port and 4,000 on the plugin (WebSocket) port, a real plugin still
//! connects (hello → hello_ack), a fresh HTTP client still gets `/healthz`
//! promptly, and the daemon's threads and resident memory stay within what
//! its connection caps allow (docs/RELIABILITY.md, "Flood checks").
//!
//! The daemon is started with a soft open-file limit of 1,024, the default
//! of a login shell or a systemd service: it must raise its own limit to
//! what its caps need (`src/fdlimit.rs`), or ~500 silent sockets would
//! exhaust its descriptors and every new client would wait in the kernel's
//! accept queue. This file holds one test: lowering the limit around the
//! daemon's start is process-wide.

mod support;

use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use baa_conductor::fdlimit;
use serde_json::json;
use support::ws::connect;
use support::{raw_response, wait_until, Daemon, DaemonOpts};

/// Silent sockets per port.
const SILENT: usize = 4000;
/// Fresh `/healthz` requests timed, before and during the flood.
const PROBES: usize = 100;
/// The daemon's HTTP connection cap (`ServerConfig::default`): each silent
/// socket holds one connection thread until the 10 s header timeout.
const HTTP_CAP: usize = 4096;
/// Resident memory a held connection may cost the daemon.
const RSS_PER_CONN_KIB: u64 = 20;
/// Connections opened before waiting for the daemon to accept them: below
/// the listen backlog (128), so no SYN is dropped and retried a second later.
const BATCH: usize = 100;

#[test]
fn silent_floods_on_both_ports_lock_out_neither_a_plugin_nor_a_fresh_client() {
    need_open_files(2 * SILENT as u64 + 512);
    let d = start_with_low_fd_limit();
    let pid = d.pid();
    let ws = ws_addr(&d);
    let (base_threads, base_rss) = (threads(pid), rss_kib(pid));
    let before = probe_healthz(d.addr);

    // The HTTP port first: while its batches are paced by the daemon's
    // thread count, no other connection thread may come or go. Each socket
    // is held until the 10 s header timeout, so the checks follow at once.
    let started = Instant::now();
    let http_silent = flood_http(d.addr, pid, base_threads);
    let opened_in = started.elapsed();
    // The lobby holds only its newest connections: the rest are closed as
    // they come.
    let ws_silent = flood_ws(ws);
    let ws_in = started.elapsed() - opened_in;

    // A real plugin gets in and is served; a fresh client is answered.
    let mut plugin = connect(&d.ws_url(), &[]);
    let (ack, _) = plugin.hello("flood-plugin", &["chatgpt"]);
    assert_eq!(ack["type"], "hello_ack", "{ack}");
    let during = probe_healthz(d.addr);
    assert_eq!(d.get("/v1/system").data()["clients"], 1);

    let (peak_threads, peak_rss) = check_held(pid, base_threads, base_rss, opened_in);
    println!(
        "flood: {SILENT} silent plugin-port sockets opened in {ws_in:?}, {SILENT} HTTP in {opened_in:?}; threads {base_threads} -> \
         {peak_threads}; RSS {} -> {} MB; /healthz on a fresh connection p50/p99/max: quiet {} / \
         during the flood {}",
        base_rss / 1024,
        peak_rss / 1024,
        before.summary(),
        during.summary()
    );
    // Generous: the p99 target is 50 ms (docs/RELIABILITY.md records the
    // measured figures); on a shared, loaded 2-core host a test bound must
    // not flake, and a lock-out shows as seconds, not milliseconds.
    assert!(during.p99 < Duration::from_secs(1), "p99 {:?}", during.p99);
    drop((ws_silent, http_silent));
}

/// Checks, while the flood is held, the daemon's threads and memory against
/// its caps; returns its threads and RSS (KiB).
fn check_held(pid: u32, base_threads: usize, base_rss: u64, opened_in: Duration) -> (usize, u64) {
    let (peak_threads, peak_rss) = (threads(pid), rss_kib(pid));
    let (http_conns, ws_conns) = (named_threads(pid, "http-conn"), named_threads(pid, "ws-"));
    let lobby = baa_conductor::bridge::lobby_cap(&baa_conductor::config::Config::default());
    // Every silent HTTP socket is still held (the flood was in effect while
    // measured): none reached its 10 s header timeout yet.
    assert!(
        http_conns >= SILENT,
        "{http_conns} HTTP connection threads: the flood took {opened_in:?} to open"
    );
    // One thread per HTTP connection, under its cap; one per plugin
    // connection in the lobby and two for the plugin; the fixed roles; a
    // few ending (a probe's connection lingering after its answer, an
    // evicted lobby connection on its way out).
    assert!(http_conns <= HTTP_CAP, "{http_conns} HTTP connection threads");
    assert!(ws_conns <= lobby + 2, "{ws_conns} plugin connection threads, lobby cap {lobby}");
    let thread_cap = base_threads + SILENT.min(HTTP_CAP) + lobby + 2 + 8;
    assert!(peak_threads <= thread_cap, "threads {base_threads} -> {peak_threads} (cap {thread_cap})");
    // Per connection: its thread's touched stack and descriptor, ~12–16 KiB
    // (nothing on the heap: a silent HTTP connection's read buffer is made
    // only once a byte arrives, a lobby connection's at its upgrade).
    let rss_cap = base_rss + (SILENT.min(HTTP_CAP) + lobby) as u64 * RSS_PER_CONN_KIB;
    assert!(peak_rss <= rss_cap, "RSS {base_rss} -> {peak_rss} KiB (cap {rss_cap} KiB)");
    (peak_threads, peak_rss)
}

/// Raises this process's soft open-file limit to `want`, or fails saying why:
/// a skipped flood check would pass without checking anything.
fn need_open_files(want: u64) {
    match fdlimit::raise_open_files(want) {
        Ok((_, now)) if now.soft >= want => {}
        Ok((_, now)) => panic!(
            "the flood check needs {want} open files; the hard limit is {} (raise it: `ulimit -Hn {want}`)",
            now.hard
        ),
        Err(err) => panic!("the flood check cannot raise its open-file limit to {want}: {err}"),
    }
}

/// Starts the daemon with a soft open-file limit of 1,024 (it inherits the
/// limit), then gives this process its own limit back.
fn start_with_low_fd_limit() -> Daemon {
    let own = fdlimit::open_files().unwrap().soft;
    fdlimit::set_soft_open_files(1024).unwrap();
    let config = json!({ "timed_jobs": { "interval_ms": 3_600_000 } });
    let d = std::panic::catch_unwind(|| Daemon::start(DaemonOpts::new().config(config)));
    fdlimit::set_soft_open_files(own).unwrap();
    d.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Opens `SILENT` sockets to the plugin port, in batches the daemon accepts
/// before the next: connection `i` entering the full lobby closes
/// connection `i - lobby`, so that one's end of stream says `i` was taken.
fn flood_ws(addr: SocketAddr) -> Vec<TcpStream> {
    let lobby = baa_conductor::bridge::lobby_cap(&baa_conductor::config::Config::default());
    let mut socks: Vec<TcpStream> = Vec::with_capacity(SILENT);
    while socks.len() < SILENT {
        for _ in 0..BATCH.min(SILENT - socks.len()) {
            socks.push(TcpStream::connect(addr).expect("connect to the plugin port"));
        }
        if let Some(evicted) = socks.len().checked_sub(lobby + 1) {
            let sock = &mut socks[evicted];
            assert!(closed_within(sock, Duration::from_secs(10)), "connection {evicted} was never evicted");
        }
    }
    socks
}

/// Opens `SILENT` sockets to the HTTP port, each batch taken (its threads
/// started) before the next.
fn flood_http(addr: SocketAddr, pid: u32, base_threads: usize) -> Vec<TcpStream> {
    let mut socks: Vec<TcpStream> = Vec::with_capacity(SILENT);
    while socks.len() < SILENT {
        for _ in 0..BATCH.min(SILENT - socks.len()) {
            socks.push(TcpStream::connect(addr).expect("connect to the HTTP port"));
        }
        let opened = socks.len();
        let taken = wait_until(Duration::from_secs(10), || threads(pid) >= base_threads + opened);
        assert!(taken, "the daemon did not take {opened} HTTP connections: {} threads", threads(pid));
    }
    socks
}

/// Latencies of fresh-connection `GET /healthz` requests, in order.
struct Latencies {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latencies {
    fn summary(&self) -> String {
        format!("{:.1} / {:.1} / {:.1} ms", ms(self.p50), ms(self.p99), ms(self.max))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `PROBES` requests, each on a new connection: connect, send, read all.
fn probe_healthz(addr: SocketAddr) -> Latencies {
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut took: Vec<Duration> = (0..PROBES)
        .map(|_| {
            let started = Instant::now();
            let resp = raw_response(addr, request, Duration::from_secs(10));
            assert_eq!(resp.status, 200, "{}", resp.text());
            started.elapsed()
        })
        .collect();
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    Latencies { p50: at(0.50), p99: at(0.99), max: took[took.len() - 1] }
}

fn ws_addr(d: &Daemon) -> SocketAddr {
    let url = d.ws_url();
    let hostport = url.trim_start_matches("ws://").split('/').next().unwrap().to_string();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

fn proc_status(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let value = status.lines().find_map(|l| l.strip_prefix(key)).unwrap();
    value.trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn threads(pid: u32) -> usize {
    proc_status(pid, "Threads:") as usize
}

/// Threads of `pid` whose name starts with `prefix`.
fn named_threads(pid: u32, prefix: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let comm = |task: std::fs::DirEntry| std::fs::read_to_string(task.path().join("comm")).ok();
    tasks.filter_map(|t| comm(t.ok()?)).filter(|name| name.starts_with(prefix)).count()
}

fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS:")
}

/// Whether the daemon closed `s` within `limit` (end of stream or reset).
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    !matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}
