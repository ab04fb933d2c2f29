//! Integration tests of the HTTP/1.1 transport in `baa_conductor::http::server`,
//! driven by raw `TcpStream` clients (`tests/http_support`) so that every
//! byte on the wire is under the test's control. Each test reproduces one of
//! the hazards the transport exists to avoid (stranded keep-alive bursts,
//! missing timeouts and limits, handler panics). Many connections and
//! file-descriptor exhaustion: `tests/http_resources.rs`.

mod http_support;

use std::io::{self, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use baa_conductor::http::server::ServerConfig;
use http_support::*;

// ---------------------------------------------------------------------------
// 1. Keep-alive burst
// ---------------------------------------------------------------------------

#[test]
fn burst_of_keep_alive_clients_is_served_promptly() {
    const CLIENTS: usize = 32;
    let (server, _) = start(ServerConfig::default());
    let addr = server.local_addr();
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let mut client = connect(addr);
                for round in 0..2 {
                    send(&mut client, &get_request(&format!("/c{i}/r{round}")));
                    let resp = read_response(&mut client).expect("response");
                    assert_eq!(resp.status, 200);
                    assert_eq!(resp.text(), format!("GET /c{i}/r{round} 0"));
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for client in clients {
        client.join().expect("client thread");
    }
    let elapsed = start.elapsed();
    assert!(elapsed < Duration::from_secs(1), "burst took {elapsed:?}");
}

// ---------------------------------------------------------------------------
// 2. Oversized head
// ---------------------------------------------------------------------------

#[test]
fn megabyte_of_headers_is_refused_and_server_keeps_serving() {
    let (server, _) = start(ServerConfig::default());
    let addr = server.local_addr();
    let mut client = connect(addr);
    let mut writer = client.get_ref().try_clone().expect("clone");
    let sender = thread::spawn(move || {
        let head = format!("GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(1_000_000));
        // The server may hang up mid-way; that is an allowed outcome.
        let _ = writer.write_all(head.as_bytes());
    });
    match read_response(&mut client) {
        Ok(resp) => assert!([400, 413, 431].contains(&resp.status), "status {}", resp.status),
        Err(err) => assert_ne!(err.kind(), io::ErrorKind::WouldBlock, "no answer: {err}"),
    }
    sender.join().expect("sender thread");
    assert_eq!(get(addr, "/next").status, 200);
}

// ---------------------------------------------------------------------------
// 3. Oversized bodies
// ---------------------------------------------------------------------------

fn small_body_config() -> ServerConfig {
    ServerConfig { max_body_bytes: 1024, ..ServerConfig::default() }
}

/// Reads the answer to an oversized request and checks the connection closes.
fn expect_too_large_then_close(client: &mut BufReader<TcpStream>) {
    let resp = read_response(client).expect("answer without sending the body");
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    time_until_closed(client, Duration::from_secs(3));
}

#[test]
fn oversized_content_length_is_answered_without_reading_the_body() {
    let (server, _) = start(small_body_config());
    let addr = server.local_addr();
    let mut client = connect(addr);
    send(&mut client, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n");
    expect_too_large_then_close(&mut client);

    // With Expect: 100-continue the server must not invite the body.
    let mut client = connect(addr);
    send(
        &mut client,
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 2000\r\n\r\n",
    );
    expect_too_large_then_close(&mut client);

    // Within the limit, 100 Continue comes first, then the real answer.
    let mut client = connect(addr);
    send(
        &mut client,
        "POST /up HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    );
    assert_eq!(read_response(&mut client).expect("100").status, 100);
    send(&mut client, "abc");
    assert_eq!(read_response(&mut client).expect("answer").text(), "POST /up 3");
}

#[test]
fn oversized_chunked_body_is_cut_off() {
    let (server, _) = start(small_body_config());
    let addr = server.local_addr();
    // One chunk announcing more than the limit.
    let mut client = connect(addr);
    send(&mut client, "POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n");
    expect_too_large_then_close(&mut client);

    // Small chunks adding up to more than the limit; no terminating chunk.
    let mut client = connect(addr);
    let chunk = format!("190\r\n{}\r\n", "x".repeat(400));
    send(
        &mut client,
        &format!(
            "POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}{chunk}"
        ),
    );
    expect_too_large_then_close(&mut client);
    assert_eq!(get(addr, "/still-up").status, 200);
}

// ---------------------------------------------------------------------------
// 4. Pipelining
// ---------------------------------------------------------------------------

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (server, _) = start(ServerConfig::default());
    let mut client = connect(server.local_addr());
    let raw = format!(
        "{}POST /second HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello{}",
        get_request("/first"),
        get_request("/third")
    );
    send(&mut client, &raw);
    for expected in ["GET /first 0", "POST /second 5", "GET /third 0"] {
        let resp = read_response(&mut client).expect("pipelined response");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), expected);
    }
}

// ---------------------------------------------------------------------------
// 5. Chunked bodies in both directions
// ---------------------------------------------------------------------------

#[test]
fn chunked_request_body_is_decoded() {
    let (server, _) = start(ServerConfig::default());
    let mut client = connect(server.local_addr());
    send(
        &mut client,
        "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n",
    );
    let resp = read_response(&mut client).expect("response");
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
    // The connection stays usable after the trailer.
    send(&mut client, &get_request("/after"));
    assert_eq!(read_response(&mut client).expect("response").text(), "GET /after 0");
}

#[test]
fn invalid_chunked_body_is_rejected() {
    let (server, _) = start(ServerConfig::default());
    let mut client = connect(server.local_addr());
    send(&mut client, "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    assert_eq!(read_response(&mut client).expect("response").status, 400);
    time_until_closed(&mut client, Duration::from_secs(3));
}

#[test]
fn streaming_response_arrives_as_chunks_and_terminates() {
    let (server, _) = start(ServerConfig::default());
    let mut client = connect(server.local_addr());
    send(&mut client, &get_request("/stream"));
    let resp = read_response(&mut client).expect("stream");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.chunks, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    send(&mut client, &get_request("/after-stream"));
    assert_eq!(read_response(&mut client).expect("response").status, 200);
}

// ---------------------------------------------------------------------------
// 6. Handler panics
// ---------------------------------------------------------------------------

#[test]
fn handler_panic_becomes_internal_error_and_server_survives() {
    let (server, _) = start(ServerConfig::default());
    let addr = server.local_addr();
    let resp = get(addr, "/panic");
    assert_eq!((resp.status, resp.text().as_str()), (500, "internal"));
    for _ in 0..3 {
        assert_eq!(get(addr, "/fine").status, 200);
    }
}

// ---------------------------------------------------------------------------
// 7. Timeouts
// ---------------------------------------------------------------------------

#[test]
fn slowloris_is_cut_at_header_timeout() {
    let (server, _) = start(short_timeouts());
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let start = Instant::now();
    let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    let mut sink = [0u8; 256];
    let closed_after = loop {
        assert!(start.elapsed() < Duration::from_secs(3), "slowloris never cut off");
        if stream.write_all(b"a").is_err() {
            break start.elapsed();
        }
        match stream.read(&mut sink) {
            Ok(0) => break start.elapsed(),
            Ok(_) => panic!("unexpected response to an incomplete head"),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => break start.elapsed(),
        }
    };
    assert!(closed_after >= Duration::from_millis(250), "cut too early: {closed_after:?}");
    assert!(closed_after < Duration::from_secs(2), "cut too late: {closed_after:?}");
}

/// The header deadline holds on a keep-alive connection too, where the
/// socket's read timeout was last set for the (longer) idle wait and the
/// server reuses a timeout it already set when it fits.
#[test]
fn a_partial_head_after_a_request_is_cut_at_header_timeout() {
    let (server, _) = start(ServerConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    });
    let mut client = connect(server.local_addr());
    send(&mut client, &get_request("/once"));
    assert_eq!(read_response(&mut client).expect("response").status, 200);
    send(&mut client, "GET /twice HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    let cut = time_until_closed(&mut client, Duration::from_secs(5));
    assert!(cut >= Duration::from_millis(250), "cut too early: {cut:?}");
    assert!(cut < Duration::from_millis(1500), "cut at {cut:?}, not at the header deadline");
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let (server, _) = start(short_timeouts());
    let addr = server.local_addr();
    let mut client = connect(addr);
    send(&mut client, &get_request("/once"));
    assert_eq!(read_response(&mut client).expect("response").status, 200);
    let idle = time_until_closed(&mut client, Duration::from_secs(3));
    assert!(idle >= Duration::from_millis(200), "closed too early: {idle:?}");
    assert!(idle < Duration::from_secs(2), "closed too late: {idle:?}");

    // A connection that never sends anything is idle as well.
    let mut silent = connect(addr);
    let idle = time_until_closed(&mut silent, Duration::from_secs(3));
    assert!(idle < Duration::from_secs(2), "silent connection kept {idle:?}");
    assert!(wait_until(Duration::from_secs(2), || server.active_connections() == 0));
}

// ---------------------------------------------------------------------------
// 10. Shutdown
// ---------------------------------------------------------------------------

#[test]
fn shutdown_finishes_in_flight_closes_idle_and_stops_accepting() {
    let (server, handler) = start(ServerConfig::default());
    let addr = server.local_addr();
    let mut idle = connect(addr);
    send(&mut idle, &get_request("/warm-up"));
    assert_eq!(read_response(&mut idle).expect("warm-up").status, 200);
    let mut slow = connect(addr);
    send(&mut slow, &get_request("/slow"));
    assert!(wait_until(Duration::from_secs(2), || handler.slow_started.load(Ordering::SeqCst) == 1));

    thread::scope(|scope| {
        let started = Instant::now();
        let shutdown = scope.spawn(|| server.shutdown(Duration::from_secs(5)));
        let idle_closed = time_until_closed(&mut idle, Duration::from_secs(3));
        assert!(idle_closed < Duration::from_secs(1), "idle connection kept {idle_closed:?}");

        let resp = read_response(&mut slow).expect("in-flight response");
        assert_eq!((resp.status, resp.text().as_str()), (200, "slow done"));
        assert_eq!(resp.header("connection"), Some("close"));
        // The slow connection is still registered until we hang up.
        assert!(!shutdown.is_finished(), "shutdown did not wait for the in-flight request");
        drop(slow);
        shutdown.join().expect("shutdown thread");
        assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    });
    assert_eq!(server.active_connections(), 0);
    assert!(TcpStream::connect(addr).is_err(), "still accepting after shutdown");
    server.shutdown(Duration::from_secs(1));
}

// ---------------------------------------------------------------------------
// Smaller protocol checks
// ---------------------------------------------------------------------------

#[test]
fn malformed_head_gets_bad_request_and_close() {
    let (server, _) = start(ServerConfig::default());
    let mut client = connect(server.local_addr());
    send(&mut client, "GET / HTTP/1.1\r\nBad Header Name: x\r\n\r\n");
    assert_eq!(read_response(&mut client).expect("response").status, 400);
    time_until_closed(&mut client, Duration::from_secs(3));
}

#[test]
fn http10_closes_unless_keep_alive_and_client_close_is_honoured() {
    let (server, _) = start(ServerConfig::default());
    let addr = server.local_addr();
    let mut client = connect(addr);
    send(&mut client, "GET /old HTTP/1.0\r\n\r\n");
    let resp = read_response(&mut client).expect("response");
    assert_eq!(resp.header("connection"), Some("close"));
    time_until_closed(&mut client, Duration::from_secs(3));

    let mut client = connect(addr);
    send(&mut client, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let resp = read_response(&mut client).expect("response");
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    send(&mut client, "GET /close HTTP/1.1\r\nConnection: close\r\n\r\n");
    let resp = read_response(&mut client).expect("response");
    assert_eq!(resp.header("connection"), Some("close"));
    time_until_closed(&mut client, Duration::from_secs(3));
}
