//! Integration tests of the HTTP/1.1 transport in `baa_conductor::http::server`,
//! driven by raw `TcpStream` clients so that every byte on the wire is under
//! the test's control. Each test reproduces one of the hazards the transport
//! exists to avoid (stranded keep-alive bursts, missing timeouts and limits,
//! an accept loop that dies on EMFILE, unclosable idle connections).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use baa_conductor::http::server::{
    Body, BodyError, Handler, Request, Response, Server, ServerConfig, TransportError,
};

// ---------------------------------------------------------------------------
// Test handler and server setup
// ---------------------------------------------------------------------------

/// Echoes `METHOD TARGET BODY-LEN`; `/echo` returns the body itself,
/// `/panic` panics, `/stream` streams three chunks, `/slow` sleeps 300 ms.
#[derive(Default)]
struct TestHandler {
    slow_started: AtomicUsize,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".to_string(), "text/plain".to_string())],
        body: Body::Full(body.into().into_bytes()),
        close: false,
    }
}

impl Handler for TestHandler {
    fn handle(&self, req: Request) -> Response {
        let body = match req.body {
            Ok(ref body) => body,
            Err(BodyError::TooLarge) => return text(413, "too large"),
        };
        match req.target.as_str() {
            "/panic" => panic!("test handler panics on purpose"),
            "/echo" => text(200, String::from_utf8_lossy(body)),
            "/slow" => {
                self.slow_started.fetch_add(1, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(300));
                text(200, "slow done")
            }
            "/stream" => stream_response(),
            _ => text(200, format!("{} {} {}", req.method, req.target, body.len())),
        }
    }

    fn transport_error(&self, err: TransportError) -> Response {
        match err {
            TransportError::BadRequest(message) => text(400, message),
            TransportError::HeadersTooLarge => text(431, "headers too large"),
            TransportError::Internal => text(500, "internal"),
        }
    }

    fn overloaded(&self) -> Response {
        text(503, "overloaded")
    }
}

fn stream_response() -> Response {
    let (tx, rx) = crossbeam_channel::unbounded();
    thread::spawn(move || {
        for part in ["one", "two", "three"] {
            if tx.send(part.as_bytes().to_vec()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    Response {
        status: 200,
        headers: vec![("Content-Type".to_string(), "text/event-stream".to_string())],
        body: Body::Stream(rx),
        close: false,
    }
}

fn start(config: ServerConfig) -> (Server, Arc<TestHandler>) {
    init_logging();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let handler = Arc::new(TestHandler::default());
    let server = Server::start(listener, config, handler.clone()).expect("start server");
    (server, handler)
}

/// Warnings and errors go to stderr (captured per test by libtest).
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {}", record.level(), record.args());
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn init_logging() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

// ---------------------------------------------------------------------------
// Raw client helpers
// ---------------------------------------------------------------------------

/// A parsed response; `chunks` lists the wire chunks of a chunked body.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunks: Vec<Vec<u8>>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects with a 5 s read timeout so a broken server fails a test instead
/// of hanging it.
fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    BufReader::new(stream)
}

fn send(client: &mut BufReader<TcpStream>, raw: &str) {
    client.get_mut().write_all(raw.as_bytes()).expect("write request");
}

fn get_request(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n")
}

fn read_line(r: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(r: &mut BufReader<TcpStream>) -> io::Result<Resp> {
    let status_line = read_line(r)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut resp = Resp { status, headers, body: Vec::new(), chunks: Vec::new() };
    if resp.header("transfer-encoding") == Some("chunked") {
        read_chunks(r, &mut resp)?;
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body)?;
    }
    Ok(resp)
}

fn read_chunks(r: &mut BufReader<TcpStream>, resp: &mut Resp) -> io::Result<()> {
    loop {
        let size_line = read_line(r)?;
        let size = usize::from_str_radix(size_line.trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, size_line.clone()))?;
        if size == 0 {
            while !read_line(r)?.is_empty() {}
            return Ok(());
        }
        let mut chunk = vec![0; size];
        r.read_exact(&mut chunk)?;
        assert_eq!(read_line(r)?, "", "chunk not followed by CRLF");
        resp.body.extend_from_slice(&chunk);
        resp.chunks.push(chunk);
    }
}

/// One request on a fresh connection.
fn get(addr: SocketAddr, target: &str) -> Resp {
    let mut client = connect(addr);
    send(&mut client, &get_request(target));
    read_response(&mut client).expect("response")
}

/// Waits for the server to close the connection (EOF or reset, not a read
/// timeout) and returns how long that took.
fn time_until_closed(client: &mut BufReader<TcpStream>, limit: Duration) -> Duration {
    let start = Instant::now();
    client.get_ref().set_read_timeout(Some(limit)).expect("timeout");
    let mut sink = [0u8; 1024];
    loop {
        match client.read(&mut sink) {
            Ok(0) => return start.elapsed(),
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("connection still open after {limit:?}")
            }
            Err(_) => return start.elapsed(),
        }
    }
}

fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    condition()
}

fn short_timeouts() -> ServerConfig {
    ServerConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    }
}

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
// 2. Many idle connections
// ---------------------------------------------------------------------------

/// Raises this process's soft limit on open files to at least `want`
/// (the server runs in this process, so both ends of every connection
/// count); an error says why it cannot.
#[cfg(target_os = "linux")]
fn raise_fd_limit(want: u64) -> Result<u64, String> {
    #[repr(C)]
    struct Rlimit {
        cur: u64,
        max: u64,
    }
    extern "C" {
        fn getrlimit(resource: i32, rlim: *mut Rlimit) -> i32;
        fn setrlimit(resource: i32, rlim: *const Rlimit) -> i32;
    }
    const RLIMIT_NOFILE: i32 = 7;
    let mut limit = Rlimit { cur: 0, max: 0 };
    // SAFETY: `limit` is a valid, writable `struct rlimit` (two rlim_t).
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if limit.cur >= want {
        return Ok(limit.cur);
    }
    if limit.max < want {
        return Err(format!("the hard limit on open files is {}, below {want}", limit.max));
    }
    limit.cur = want;
    // SAFETY: as above; only the soft limit changes, within the hard one.
    if unsafe { setrlimit(RLIMIT_NOFILE, &limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
    }
    Ok(want)
}

#[cfg(not(target_os = "linux"))]
fn raise_fd_limit(want: u64) -> Result<u64, String> {
    Err(format!("raising the open-file limit to {want} is implemented for Linux only"))
}

#[test]
fn thousand_idle_connections_do_not_block_a_new_client() {
    const IDLE: usize = 1000;
    // Three descriptors per connection (the client's end, the server's, and
    // the server registry's clone of it), plus the test's own. Never skip
    // for a low limit: the test would pass without testing anything.
    const FILES: u64 = 3 * IDLE as u64 + 200;
    if let Err(why) = raise_fd_limit(FILES) {
        panic!("this test needs {FILES} open files and cannot have them: {why} (raise `ulimit -n`)");
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
// 3. Oversized head
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
// 4. File-descriptor exhaustion (server in a child process with ulimit -n 64)
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

// ---------------------------------------------------------------------------
// 5. Oversized bodies
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
// 6. Pipelining
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
// 7. Chunked bodies in both directions
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
// 8. Handler panics
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
// 9. Timeouts
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
