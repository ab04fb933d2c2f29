//! Both listeners queue a burst of connections while the daemon is not
//! accepting (src/listen.rs): with the process stopped (SIGSTOP), the
//! kernel still completes 600 handshakes on each port — std's backlog of
//! 128 completed 129 and dropped the rest's SYNs, so those clients waited a
//! second or more for their retry — and once it runs again every queued
//! connection is served.

#![cfg(target_os = "linux")]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use support::{Daemon, DaemonOpts};

/// More than std's 128, well below the daemon's 1024.
const BURST: usize = 600;

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGSTOP: i32 = 19;
const SIGCONT: i32 = 18;

/// Stops the daemon's process until dropped (also when the test fails).
struct Stopped(i32);

impl Stopped {
    fn new(pid: u32) -> Stopped {
        // SAFETY: signals the daemon child this test started.
        assert_eq!(unsafe { kill(pid as i32, SIGSTOP) }, 0);
        Stopped(pid as i32)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { kill(self.0, SIGCONT) };
    }
}

fn addr_of(url: &str) -> SocketAddr {
    let hostport = url.split("://").nth(1).unwrap().split('/').next().unwrap();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

/// Opens `BURST` connections to `addr`; panics on the first that does not
/// complete within a second (a dropped SYN is retried only after one).
fn burst(addr: SocketAddr, what: &str) -> Vec<TcpStream> {
    (0..BURST)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_millis(900))
                .unwrap_or_else(|e| panic!("{what}: connection {i} of {BURST} not queued: {e}"))
        })
        .collect()
}

#[test]
fn a_burst_of_connections_waits_in_the_queue_not_in_syn_retries() {
    // The client ends of both bursts are this process's descriptors.
    const FILES: u64 = 2 * BURST as u64 + 200;
    match baa_conductor::fdlimit::raise_open_files(FILES) {
        Ok((_, now)) if now.soft >= FILES => {}
        Ok((_, now)) => panic!("this test needs {FILES} open files and the hard limit is {}", now.hard),
        Err(why) => panic!("this test needs {FILES} open files and cannot have them: {why}"),
    }
    let d = Daemon::start(DaemonOpts::new());
    let (http, ws) = (addr_of(&d.base), addr_of(&d.ws_url()));
    let stopped = Stopped::new(d.pid());
    let mut queued = burst(http, "HTTP");
    let plugins = burst(ws, "plugin endpoint");
    drop(stopped);
    // Served once the daemon runs again: the last connection of the burst
    // gets its answer.
    let last = queued.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = last.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    drop((queued, plugins));
    assert_eq!(d.get("/healthz").status, 200);
}
