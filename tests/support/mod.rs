//! Shared helpers of the integration tests: temporary directories, a daemon
//! process under test, a tiny blocking HTTP/1.1 client, polling with a
//! deadline, and fixtures written straight into the store.
//!
//! Every test gets its own `Daemon` (own temp dir, own ports), so the tests of
//! one file may run in parallel threads. Nothing here sleeps to synchronise:
//! waiting is always "poll a condition until a deadline".

#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// How long a daemon gets to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopped daemon gets to exit before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Default read deadline of one HTTP exchange.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variables of the daemon that must not leak in from the
/// environment the tests run in.
const BAA_VARS: [&str; 5] = ["BAA_CONFIG", "BAA_STATE_DIR", "BAA_LISTEN", "BAA_WS_LISTEN", "BAA_TOKEN"];

/// Path of the daemon binary built for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_baa-conductor")
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Polls `cond` until it holds or `timeout` passes; true if it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let path = std::env::temp_dir().join(format!("baa-test-{tag}-{}-{n}-{nanos:x}", std::process::id()));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------

/// A command for the daemon binary with the BAA_* environment cleared.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for var in BAA_VARS {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs the binary to completion (killed after `timeout`) and returns its
/// output. For the CLI commands that print and exit.
pub fn run_to_exit(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn baa-conductor");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = match wait_with_deadline(&mut child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let status = child.wait().expect("wait after kill");
            panic!("baa-conductor did not exit within {timeout:?} (killed: {status})");
        }
    };
    Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// Waits for a child to exit, at most `timeout`.
pub fn wait_with_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// Sends a signal by name (`TERM`, `KILL`, ...) with the `kill` command.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    // The process may already have exited; callers check its status.
    let _ = ok;
}

// ---------------------------------------------------------------------------
// The daemon under test
// ---------------------------------------------------------------------------

/// How to start a daemon.
#[derive(Debug, Clone, Default)]
pub struct DaemonOpts {
    /// Passed as `--token`; `get`/`post_json` then send it as a bearer.
    pub token: Option<String>,
    /// Contents of `<state>/config.json` (written before every start).
    pub config: Option<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Extra command-line arguments (after the defaults).
    pub args: Vec<String>,
}

impl DaemonOpts {
    pub fn new() -> DaemonOpts {
        DaemonOpts::default()
    }

    pub fn token(mut self, token: &str) -> DaemonOpts {
        self.token = Some(token.to_string());
        self
    }

    pub fn config(mut self, config: Value) -> DaemonOpts {
        self.config = Some(config.to_string());
        self
    }

    pub fn config_text(mut self, text: &str) -> DaemonOpts {
        self.config = Some(text.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> DaemonOpts {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn arg(mut self, arg: &str) -> DaemonOpts {
        self.args.push(arg.to_string());
        self
    }
}

/// A running `baa-conductor serve` on its own temp state dir, listening on
/// free loopback ports. Dropping it stops it (SIGTERM, then SIGKILL) and
/// checks that it stopped cleanly.
pub struct Daemon {
    tmp: TempDir,
    state: PathBuf,
    stderr_path: PathBuf,
    opts: DaemonOpts,
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` as printed in the ready line.
    pub base: String,
    pub addr: SocketAddr,
}

impl Daemon {
    /// Starts a daemon; panics (with its stderr) if it is not ready in time.
    pub fn start(opts: DaemonOpts) -> Daemon {
        let tmp = TempDir::new("daemon");
        let state = tmp.join("state");
        fs::create_dir_all(&state).expect("create state dir");
        let stderr_path = tmp.join("stderr.log");
        let mut daemon = Daemon {
            tmp,
            state,
            stderr_path,
            opts,
            child: None,
            base: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        if let Err(e) = daemon.spawn() {
            panic!("daemon did not start: {e}");
        }
        daemon
    }

    fn spawn(&mut self) -> Result<(), String> {
        if let Some(config) = &self.opts.config {
            fs::write(self.state.join("config.json"), config).map_err(|e| format!("write config: {e}"))?;
        }
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr_path)
            .map_err(|e| format!("open stderr log: {e}"))?;
        let state = self.state.to_string_lossy().into_owned();
        let mut cmd =
            command(&["--state-dir", &state, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"]);
        if let Some(token) = &self.opts.token {
            cmd.arg("--token").arg(token);
        }
        cmd.args(&self.opts.args);
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = crossbeam_channel::unbounded::<String>();
        // Keeps draining stdout for the life of the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(line) => {
                        let _ = tx.send(line);
                    }
                    Err(_) => break,
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut other_lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(hostport) = line.strip_prefix("baa-conductor listening on http://") {
                        let addr: SocketAddr =
                            hostport.trim().parse().map_err(|e| format!("bad ready line {line:?}: {e}"))?;
                        self.addr = addr;
                        self.base = format!("http://{addr}");
                        self.child = Some(child);
                        return Ok(());
                    }
                    other_lines.push(line);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "no ready line within {READY_TIMEOUT:?}; stdout {other_lines:?}; stderr:\n{}",
                        self.stderr_text()
                    ));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    let status = wait_with_deadline(&mut child, STOP_TIMEOUT);
                    return Err(format!(
                        "exited before ready ({status:?}); stdout {other_lines:?}; stderr:\n{}",
                        self.stderr_text()
                    ));
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The plugin WebSocket URL, from the ready file `conductor.json`.
    pub fn ws_url(&self) -> String {
        let ready = read_json(&self.state.join("conductor.json")).expect("conductor.json");
        ready["ws_url"].as_str().expect("ws_url in conductor.json").to_string()
    }

    /// The test's temp dir (parent of the state dir).
    pub fn temp_dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn token(&self) -> Option<&str> {
        self.opts.token.as_deref()
    }

    /// Everything the daemon (and its restarts) wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGTERM and wait for the exit; SIGKILL if it does not come in time.
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_with("TERM")
    }

    /// Sends a stop signal (`TERM`, `INT`) and waits for the exit; panics
    /// (after a SIGKILL) if it does not come in time.
    pub fn stop_with(&mut self, signal_name: &str) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        signal(child.id(), signal_name);
        match wait_with_deadline(&mut child, STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let status = child.wait().expect("wait after SIGKILL");
                panic!("daemon ignored SIG{signal_name} for {STOP_TIMEOUT:?} (killed: {status})");
            }
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        signal(child.id(), "KILL");
        match wait_with_deadline(&mut child, STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                child.wait().expect("wait after SIGKILL")
            }
        }
    }

    /// Starts again on the same state dir (stopping first if still running).
    /// The ports change; `base` and `addr` follow.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "stop before restart: {status}");
        }
        if let Err(e) = self.spawn() {
            panic!("daemon did not restart: {e}");
        }
    }

    fn auth_headers(&self) -> Vec<(String, String)> {
        match &self.opts.token {
            Some(token) => vec![("Authorization".into(), format!("Bearer {token}"))],
            None => Vec::new(),
        }
    }

    /// GET with the daemon's token (if any).
    pub fn get(&self, path: &str) -> Resp {
        let auth = self.auth_headers();
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.request("GET", path, &headers, None)
    }

    /// POST of a JSON value with the daemon's token (if any).
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        let auth = self.auth_headers();
        let mut headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        let body = body.to_string();
        self.request("POST", path, &headers, Some(body.as_bytes()))
    }

    /// POST without a body (with the daemon's token, if any).
    pub fn post_empty(&self, path: &str) -> Resp {
        let auth = self.auth_headers();
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.request("POST", path, &headers, None)
    }

    /// Exactly the given headers (plus Host, Connection: close and, for a
    /// body, Content-Length unless given); no token is added.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        request(self.addr, method, path, headers, body)
    }

    /// Sends arbitrary bytes and returns whatever comes back until the
    /// daemon closes the connection or the read deadline passes.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        raw(self.addr, bytes, Duration::from_secs(5))
    }

    /// Sends arbitrary bytes and returns the first complete response (read
    /// until it is complete, the daemon closes, or the deadline passes).
    pub fn raw_response(&self, bytes: &[u8]) -> Resp {
        raw_response(self.addr, bytes, Duration::from_secs(5))
    }

    /// Asserts the daemon is alive and answers `/healthz`.
    pub fn assert_healthy(&mut self, after: &str) {
        assert!(self.is_running(), "daemon died after {after}; stderr:\n{}", self.stderr_text());
        let r = self.request("GET", "/healthz", &[], None);
        assert_eq!(r.status, 200, "healthz after {after}: {}", r.text());
        assert_eq!(r.json()["data"]["status"], "ok");
    }

    /// Path of the daemon's database.
    pub fn db_path(&self) -> PathBuf {
        self.state.join("conductor.db")
    }
}

/// Stops the daemon at the end of a test. A test that passed must also
/// have left a daemon that stops cleanly on SIGTERM: a role thread's panic
/// or a failed shutdown exits non-zero, and fails the test here. (A test
/// that already failed keeps its own message.)
impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        signal(child.id(), "TERM");
        let status = wait_with_deadline(&mut child, STOP_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            return;
        }
        match status {
            Some(status) if status.success() => {}
            Some(status) => {
                panic!("the daemon exited with {status} on SIGTERM; stderr:\n{}", self.stderr_text())
            }
            None => {
                panic!("the daemon ignored SIGTERM for {STOP_TIMEOUT:?}; stderr:\n{}", self.stderr_text())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A tiny blocking HTTP/1.1 client
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response {} is not JSON ({e}): {}", self.status, self.text()))
    }

    /// `data` of a success envelope; panics unless status 200 and ok.
    pub fn data(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {}: {}", self.status, self.text());
        let v = self.json();
        assert_eq!(v["ok"], true, "{v}");
        v["data"].clone()
    }

    /// `error` of an error envelope, after checking the status and the code.
    pub fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "expected {status} {code}, got {}: {}", self.status, self.text());
        let v = self.json();
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
        assert!(v["error"].get("details").is_some(), "details always present: {v}");
        v["error"].clone()
    }
}

/// One request on a fresh connection; panics on I/O errors.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    try_request(addr, method, path, headers, body, HTTP_TIMEOUT)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr} failed: {e}"))
}

/// One request on a fresh connection (`Connection: close`).
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = body {
        if !has("content-length") && !has("transfer-encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    // The server may answer (413) and close before reading everything we
    // send; a failed write is not the end if an answer is waiting.
    let write_result = stream.write_all(&bytes);
    match read_response(&mut stream, method == "HEAD", timeout) {
        Ok(resp) => Ok(resp),
        Err(read_err) => Err(write_result.err().unwrap_or(read_err)),
    }
}

/// Reads one response from a stream (skipping `1xx` interim responses).
pub fn read_response(stream: &mut TcpStream, head_request: bool, timeout: Duration) -> io::Result<Resp> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut eof = false;
    loop {
        match parse_response(&buf, eof, head_request) {
            Parsed::Done(resp, _) => return Ok(resp),
            Parsed::Bad(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
            Parsed::Incomplete if eof => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("incomplete response: {:?}", String::from_utf8_lossy(&buf)),
                ))
            }
            Parsed::Incomplete => {}
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "response deadline passed"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset after the response arrived completely is harmless; one
            // before it means there is no (complete) answer.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !buf.is_empty() => eof = true,
            Err(e) => return Err(e),
        }
    }
}

pub enum Parsed {
    Incomplete,
    /// The response and the number of bytes it used.
    Done(Resp, usize),
    Bad(String),
}

/// Parses the first final response in `buf`. `eof`: no more bytes will come
/// (ends a body delimited by the connection close).
pub fn parse_response(buf: &[u8], eof: bool, head_request: bool) -> Parsed {
    let mut start = 0;
    loop {
        let Some(end) = find(&buf[start..], b"\r\n\r\n") else {
            return Parsed::Incomplete;
        };
        let head = String::from_utf8_lossy(&buf[start..start + end]).into_owned();
        let body_start = start + end + 4;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/1.") {
            return Parsed::Bad(format!("bad status line {status_line:?}"));
        }
        let Some(status) = parts.next().and_then(|s| s.parse::<u16>().ok()) else {
            return Parsed::Bad(format!("bad status line {status_line:?}"));
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        if (100..200).contains(&status) {
            start = body_start;
            continue;
        }
        let get =
            |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let rest = &buf[body_start..];
        if head_request || status == 204 || status == 304 {
            return Parsed::Done(Resp { status, headers, body: Vec::new() }, body_start);
        }
        if get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
            return match decode_chunked(rest) {
                Ok(Some((body, used))) => Parsed::Done(Resp { status, headers, body }, body_start + used),
                Ok(None) => Parsed::Incomplete,
                Err(why) => Parsed::Bad(why),
            };
        }
        if let Some(len) = get("content-length") {
            let Ok(len) = len.parse::<usize>() else {
                return Parsed::Bad(format!("bad content-length {len:?}"));
            };
            if rest.len() < len {
                return Parsed::Incomplete;
            }
            return Parsed::Done(Resp { status, headers, body: rest[..len].to_vec() }, body_start + len);
        }
        if eof {
            return Parsed::Done(Resp { status, headers, body: rest.to_vec() }, buf.len());
        }
        return Parsed::Incomplete;
    }
}

/// Decodes a chunked body; `Ok(None)` while incomplete.
fn decode_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + line_end]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
        pos += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends arbitrary bytes on a fresh connection and reads until the peer
/// closes, the connection fails or `timeout` passes.
pub fn raw(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    let deadline = Instant::now() + timeout;
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    out
}

/// Sends arbitrary bytes on a fresh connection and reads just the first
/// complete response; panics if none arrives before the peer closes or
/// `timeout` passes.
pub fn raw_response(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> Resp {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).expect("connect");
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.write_all(bytes);
    match read_response(&mut stream, false, timeout) {
        Ok(resp) => resp,
        Err(e) => panic!("no response to {:?}: {e}", String::from_utf8_lossy(&bytes[..bytes.len().min(80)])),
    }
}

/// Parses the first response of what `raw` returned; panics if there is none.
pub fn first_response(bytes: &[u8]) -> Resp {
    match parse_response(bytes, true, false) {
        Parsed::Done(resp, _) => resp,
        Parsed::Incomplete => panic!("no complete response in {:?}", String::from_utf8_lossy(bytes)),
        Parsed::Bad(why) => panic!("bad response ({why}): {:?}", String::from_utf8_lossy(bytes)),
    }
}

// ---------------------------------------------------------------------------
// API payloads
// ---------------------------------------------------------------------------

/// A minimal `POST /v1/messages` body; add fields with `msg[..] = ...`.
pub fn message_body(platform: &str, conversation_id: &str, message_id: &str, text: &str) -> Value {
    serde_json::json!({
        "platform": platform, "conversation_id": conversation_id,
        "message_id": message_id, "text": text,
    })
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Store fixtures (written straight into <state>/conductor.db)
// ---------------------------------------------------------------------------

/// A connection to a daemon's database; safe while it runs (WAL).
pub fn db(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).expect("open conductor.db");
    conn.busy_timeout(Duration::from_secs(10)).expect("busy timeout");
    conn
}

/// A renewal job row. The projector that creates jobs is not in these
/// tests' scope, so jobs are inserted as fixtures.
#[derive(Debug, Clone)]
pub struct JobSeed {
    pub job_id: String,
    pub local_conversation_id: String,
    pub message_id: String,
    pub status: String,
    pub payload_kind: String,
    pub payload: String,
    pub target_snapshot: Option<String>,
    pub attempt_count: i64,
    pub max_attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    pub log_path: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl JobSeed {
    /// A job with a JSON payload whose `text` is `"renew <job_id>"`, due in
    /// an hour (so no dispatcher picks it up during a test).
    pub fn new(job_id: &str, status: &str) -> JobSeed {
        let now = now_ms();
        JobSeed {
            job_id: job_id.to_string(),
            local_conversation_id: "lc_seed".to_string(),
            message_id: format!("msg_{job_id}"),
            status: status.to_string(),
            payload_kind: "json".to_string(),
            payload: serde_json::json!({
                "kind": "renewal.message", "version": 1, "template": "summary_with_link",
                "text": format!("renew {job_id}"),
            })
            .to_string(),
            target_snapshot: None,
            attempt_count: 0,
            max_attempts: 3,
            next_attempt_at: if status == "pending" { Some(now + 3_600_000) } else { None },
            last_attempt_at: None,
            last_error: None,
            log_path: None,
            started_at: None,
            finished_at: None,
            created_at: now,
            updated_at: now,
        }
    }
}

pub fn seed_job(db_path: &Path, job: &JobSeed) {
    insert_job(&db(db_path), job);
}

/// Inserts one job row through `conn` (a connection or an open transaction).
pub fn insert_job(conn: &rusqlite::Connection, job: &JobSeed) {
    conn.execute(
        "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                target_snapshot, attempt_count, max_attempts, next_attempt_at, last_attempt_at, last_error,
                log_path, started_at, finished_at, created_at, updated_at)
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17)",
        rusqlite::params![
            job.job_id,
            job.local_conversation_id,
            job.message_id,
            job.status,
            job.payload,
            job.payload_kind,
            job.target_snapshot,
            job.attempt_count,
            job.max_attempts,
            job.next_attempt_at,
            job.last_attempt_at,
            job.last_error,
            job.log_path,
            job.started_at,
            job.finished_at,
            job.created_at,
            job.updated_at,
        ],
    )
    .expect("seed renewal job");
}

/// Every field of a renewal job as the API shows it (`/v1/renewal/jobs`,
/// `/v1/renewal/jobs/:job_id`): all present, `null` when unknown.
pub const JOB_KEYS: &[&str] = &[
    "job_id",
    "local_conversation_id",
    "message_id",
    "status",
    "payload_kind",
    "payload",
    "payload_text",
    "target_snapshot",
    "attempt_count",
    "max_attempts",
    "next_attempt_at",
    "last_attempt_at",
    "last_error",
    "log_path",
    "started_at",
    "finished_at",
    "created_at",
    "updated_at",
];

/// Runs SQL against a daemon's database (fixtures, e.g. equal timestamps).
pub fn exec_sql(db_path: &Path, sql: &str) {
    db(db_path).execute_batch(sql).unwrap_or_else(|e| panic!("fixture SQL failed ({e}): {sql}"));
}

/// Config that keeps the timed jobs (projector, dispatcher) from running
/// during a test, so fixtures stay exactly as inserted.
pub fn quiet_timed_jobs() -> Value {
    serde_json::json!({ "timed_jobs": { "interval_ms": 3_600_000 } })
}

/// Reads a file the daemon writes, e.g. `conductor.json`.
pub fn read_json(path: &Path) -> Option<Value> {
    let mut text = String::new();
    File::open(path).ok()?.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}
pub mod bridge;
pub mod sse;
pub mod ws;
