//! The HTTP transport under resource pressure: a thousand idle connections
//! do not block a new client, and the accept loop survives running out of
//! file descriptors (a server in a child process with `ulimit -n 64`).

mod http_support;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use baa_conductor::http::server::ServerConfig;
use http_support::*;

// ---------------------------------------------------------------------------
// 1. Many idle connections
// ---------------------------------------------------------------------------

#[test]
fn thousand_idle_connections_do_not_block_a_new_client() {
    const IDLE: usize = 1000;
    // Three descriptors per connection (the client's end, the server's, and
    // the server registry's clone of it), plus the test's own. Never skip
    // for a low limit: the test would pass without testing anything.
    const FILES: u64 = 3 * IDLE as u64 + 200;
    // (The server runs in this process, so both ends of every connection
    // count against its limit.)
    match baa_conductor::fdlimit::raise_open_files(FILES) {
        Ok((_, now)) if now.soft >= FILES => {}
        Ok((_, now)) => panic!(
            "this test needs {FILES} open files and the hard limit is {} (raise `ulimit -Hn`)",
            now.hard
        ),
        Err(why) => panic!("this test needs {FILES} open files and cannot have them: {why}"),
    }
    let config = ServerConfig { max_connections: IDLE + 500, ..ServerConfig::default() };
    let (server, _) = start(config);
    let addr = server.local_addr();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).expect("idle connect"));
        // Let the accept loop keep up so the listen backlog never overflows
        // (an overflow costs a 1 s SYN retransmit, not a server failure).
        if idle.len() % 100 == 0 {
            let opened = idle.len();
            assert!(wait_until(Duration::from_secs(5), || server.active_connections() >= opened));
        }
    }
    let start = Instant::now();
    let resp = get(addr, "/after-idle");
    assert_eq!(resp.status, 200);
    assert!(start.elapsed() < Duration::from_secs(1), "took {:?}", start.elapsed());
    assert!(server.active_connections() >= IDLE);
}

// ---------------------------------------------------------------------------
// 2. File-descriptor exhaustion (server in a child process with ulimit -n 64)
// ---------------------------------------------------------------------------

const FD_CHILD_ENV: &str = "BAA_HTTP_FD_CHILD";
const FD_CHILD_TEST: &str = "fd_exhaustion_child_server";

/// Not a test on its own: the server half of
/// `accept_loop_survives_fd_exhaustion`, run in a child process. It serves
/// until stdin closes and obeys two commands from the parent: `fill` hoards
/// all free descriptors but one (so that one more connection can be served,
/// after which `accept()` itself fails with EMFILE) and `release` gives them
/// back.
#[test]
#[ignore = "helper process for accept_loop_survives_fd_exhaustion"]
fn fd_exhaustion_child_server() {
    if std::env::var_os(FD_CHILD_ENV).is_none() {
        return;
    }
    let (server, _) = start(ServerConfig::default());
    announce(&format!("PORT {}", server.local_addr().port()));
    let mut hoard = Vec::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "fill" => {
                // Connections still closing would free descriptors later.
                wait_until(Duration::from_secs(5), || server.active_connections() == 0);
                while let Ok(file) = std::fs::File::open("/dev/null") {
                    hoard.push(file);
                }
                hoard.pop();
                announce(&format!("FILLED {}", hoard.len()));
            }
            "release" => {
                hoard.clear();
                announce("RELEASED");
            }
            _ => {}
        }
    }
    server.shutdown(Duration::from_secs(1));
}

fn announce(line: &str) {
    println!("{line}");
    let _ = io::stdout().flush();
}

/// The parent half: runs the server in a child limited to 64 descriptors.
/// Phase 1 exhausts them with connections; phase 2 makes `accept()` itself
/// fail. After each, the server must answer again within 5 s.
#[test]
fn accept_loop_survives_fd_exhaustion() {
    let mut child = ChildServer::spawn();
    let addr = SocketAddr::from(([127, 0, 0, 1], child.port));

    let (served, refused, conns) = exhaust(addr);
    assert!(served >= 1, "nothing served; child stderr:\n{}", child.log());
    assert!(refused >= 1, "fds were never exhausted; child stderr:\n{}", child.log());
    assert!(child.is_running(), "child died:\n{}", child.log());
    drop(conns);
    let start = Instant::now();
    let answered = wait_until(Duration::from_secs(5), || fresh_request_ok(addr));
    assert!(answered, "no answer within 5 s after fds came back; child stderr:\n{}", child.log());
    assert!(start.elapsed() < Duration::from_secs(5));

    // The child now has one free descriptor, plus the one its blocked
    // accept() reserved in the kernel: exactly enough to serve one more
    // connection, after which accept() itself fails with EMFILE.
    child.command("fill", "FILLED");
    let mut first = connect(addr);
    send(&mut first, &get_request("/last-fd"));
    assert_eq!(read_response(&mut first).expect("last fd").status, 200);
    let mut pending = connect(addr);
    send(&mut pending, &get_request("/while-exhausted"));
    pending.get_ref().set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let early = read_response(&mut pending);
    assert!(early.is_err(), "answered while no fd was free: {early:?}");
    child.command("release", "RELEASED");
    let start = Instant::now();
    pending.get_ref().set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let resp = read_response(&mut pending);
    assert!(matches!(resp, Ok(ref r) if r.status == 200), "{resp:?}; child stderr:\n{}", child.log());
    assert!(start.elapsed() < Duration::from_secs(5));
    // The child's stderr arrives through a pipe and a thread; allow it a moment.
    let logged = |log: String| log.contains("accept failed") && log.contains("accepting again");
    assert!(wait_until(Duration::from_secs(2), || logged(child.log())), "{}", child.log());
}

/// The child process of the fd test; killed if still running when dropped.
struct ChildServer {
    child: std::process::Child,
    port: u16,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl ChildServer {
    fn spawn() -> ChildServer {
        let exe = std::env::current_exe().expect("current exe");
        let script = format!(
            "ulimit -n 64 && exec \"$0\" {FD_CHILD_TEST} --exact --ignored --nocapture --test-threads=1"
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&exe)
            .env(FD_CHILD_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child server");
        let stderr = collect(child.stderr.take().expect("stderr"));
        let lines = forward_lines(child.stdout.take().expect("stdout"));
        let mut server = ChildServer { child, port: 0, lines, stderr };
        let port = server.wait_for("PORT ");
        server.port = port.parse().expect("port number");
        server
    }

    /// The rest of the next stdout line containing `marker`; libtest may
    /// print "test <name> ... " before it on the same line.
    fn wait_for(&mut self, marker: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if let Some(rest) = line.split(marker).nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("child never printed {marker:?}; stderr:\n{}", self.log());
    }

    fn command(&mut self, command: &str, reply: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{command}").expect("command child");
        self.wait_for(reply);
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Closing stdin ends the child's command loop and thus the process.
        drop(self.child.stdin.take());
        if !wait_until(Duration::from_secs(5), || !self.is_running()) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn forward_lines(stdout: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    text
}

/// Opens 100 connections with a request each — far more than 64 fds allow —
/// and counts answers: 200s and everything else (503, reset, no answer).
fn exhaust(addr: SocketAddr) -> (usize, usize, Vec<BufReader<TcpStream>>) {
    let mut conns = Vec::new();
    for i in 0..100 {
        let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
            break;
        };
        let mut client = BufReader::new(stream);
        let _ = client.get_mut().write_all(get_request(&format!("/fd{i}")).as_bytes());
        conns.push(client);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut served, mut refused) = (0, 0);
    for client in &mut conns {
        let wait = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let _ = client.get_ref().set_read_timeout(Some(wait));
        match read_response(client) {
            Ok(resp) if resp.status == 200 => served += 1,
            _ => refused += 1,
        }
    }
    (served, refused, conns)
}

fn fresh_request_ok(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut client = BufReader::new(stream);
    if client.get_mut().write_all(get_request("/fresh").as_bytes()).is_err() {
        return false;
    }
    matches!(read_response(&mut client), Ok(resp) if resp.status == 200)
}
