//! The transport's limits against hostile or slow clients, each shown with a
//! good client still served: at the connection cap the oldest connection
//! without a request in progress makes room (silent sockets cannot lock new
//! clients out), a connection that never sends a byte is closed at the
//! header timeout, and a client that stops reading — or reads a trickle —
//! is cut after the send timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use baa_conductor::http::server::{Body, Handler, Request, Response, Server, ServerConfig, TransportError};

/// `/hold` waits until released; `/big` answers 32 MiB; anything else `ok`.
#[derive(Default)]
struct Gate {
    released: Mutex<bool>,
    wake: Condvar,
    /// Requests inside `/hold` (counted on entry).
    holding: AtomicUsize,
}

impl Gate {
    fn release(&self) {
        *self.released.lock() = true;
        self.wake.notify_all();
    }
}

fn text(status: u16, body: &str) -> Response {
    Response { status, headers: Vec::new(), body: Body::Full(body.as_bytes().to_vec()), close: false }
}

impl Handler for Gate {
    fn handle(&self, req: Request) -> Response {
        match req.target.as_str() {
            "/hold" => {
                self.holding.fetch_add(1, Ordering::SeqCst);
                let mut released = self.released.lock();
                let until = Instant::now() + Duration::from_secs(20);
                while !*released && !self.wake.wait_until(&mut released, until).timed_out() {}
                text(200, "held")
            }
            "/big" => Response {
                status: 200,
                headers: Vec::new(),
                body: Body::Full(vec![b'x'; 32 << 20]),
                close: false,
            },
            _ => text(200, "ok"),
        }
    }

    fn transport_error(&self, _err: TransportError) -> Response {
        text(400, "bad")
    }

    fn overloaded(&self) -> Response {
        text(503, "overloaded")
    }
}

fn start(config: ServerConfig) -> (Server, Arc<Gate>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let gate = Arc::new(Gate::default());
    (Server::start(listener, config, gate.clone()).unwrap(), gate)
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// One request on a fresh connection; the status of the answer.
fn status_of(addr: SocketAddr, target: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no answer: {out:?}"))
}

/// Whether the server closed `s` (end-of-stream or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    !matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[test]
fn at_the_cap_the_oldest_connection_without_a_request_makes_room() {
    let config = ServerConfig { max_connections: 4, ..ServerConfig::default() };
    let (server, _) = start(config);
    let addr = server.local_addr();
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(addr).unwrap());
        let n = silent.len();
        assert!(wait_until(Duration::from_secs(5), || server.active_connections() == n));
    }
    // One more dripping its head: it is older than the good client too.
    let mut dripping = TcpStream::connect(addr).unwrap();
    dripping.write_all(b"GET / HT").unwrap();
    // A good client is served at once, again and again.
    for _ in 0..3 {
        assert_eq!(status_of(addr, "/fresh"), 200);
    }
    // The oldest silent ones made room, in order; the cap held.
    assert!(closed_within(&mut silent[0], Duration::from_secs(5)), "the oldest was closed");
    assert!(server.active_connections() <= 4);
}

#[test]
fn when_every_connection_is_answering_a_request_a_new_one_gets_503() {
    let config = ServerConfig { max_connections: 2, ..ServerConfig::default() };
    let (server, gate) = start(config);
    let addr = server.local_addr();
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
            s
        })
        .collect();
    // Both inside the handler: until then, at the cap a third connection
    // would close one still sending its head to make room (a loaded
    // machine can be that slow), not be refused.
    assert!(wait_until(Duration::from_secs(10), || gate.holding.load(Ordering::SeqCst) == 2));
    // A third is refused rather than served. (The refusal is written at
    // accept: read it without sending, as a request arriving after the
    // close would reset it away.)
    let refused = || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 503")
    };
    assert!(wait_until(Duration::from_secs(5), refused));
    gate.release();
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "a busy request is never cut"
        );
    }
    assert!(wait_until(Duration::from_secs(5), || status_of(addr, "/x") == 200));
}

#[test]
fn a_connection_that_never_sends_a_byte_is_closed_at_the_header_timeout() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let (server, _) = start(config);
    let addr = server.local_addr();
    let started = Instant::now();
    let mut silent = TcpStream::connect(addr).unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)), "still open after 10 s");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "kept {took:?}: the idle timeout, not the header timeout");
    // The first head must be complete by then too, however it drips.
    let started = Instant::now();
    let mut drip = TcpStream::connect(addr).unwrap();
    let mut closed = false;
    for b in b"GET /slowloris HTTP/1.1\r\nHost: h\r\n" {
        if drip.write_all(&[*b]).is_err() || closed_within(&mut drip, Duration::from_millis(100)) {
            closed = true;
            break;
        }
    }
    assert!(closed, "a dripped head outlived the header timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status_of(addr, "/after"), 200);
}

#[test]
fn a_client_that_stops_reading_or_trickles_is_cut_after_the_send_timeout() {
    let config = ServerConfig { send_timeout: Duration::from_secs(2), ..ServerConfig::default() };
    let (server, _) = start(config);
    let addr = server.local_addr();
    // Reads nothing at all.
    let mut still = TcpStream::connect(addr).unwrap();
    still.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    // Reads 1 KiB every 100 ms: always some progress (a socket's own send
    // timeout never fires), never 64 KiB within the 2 s.
    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        trickle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let until = Instant::now() + Duration::from_secs(40);
        while Instant::now() < until && matches!(trickle.read(&mut buf), Ok(n) if n > 0) {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(wait_until(Duration::from_secs(5), || server.active_connections() == 2));
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || server.active_connections() == 0),
        "the stalled and the trickling reader still hold their 32 MiB answers after {:?}",
        started.elapsed()
    );
    drop(still);
    // A reader that keeps up gets all of it.
    let mut good = TcpStream::connect(addr).unwrap();
    good.write_all(b"GET /big HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = Vec::new();
    good.read_to_end(&mut all).unwrap();
    assert!(all.len() > 32 << 20, "{}", all.len());
    drop(reader);
}
