//! The daemon under test: temporary directories, running the binary (its
//! environment scrubbed of the daemon's variables), and `Daemon`, a
//! process on its own state dir and ports with an HTTP client and a
//! checked stop.

use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::fixtures::read_json;
use super::http::{raw, raw_response, request, Resp};
use super::{bin, wait_until, READY_TIMEOUT, STOP_TIMEOUT};

/// Environment variables of the daemon that must not leak in from the
/// environment the tests run in.
const BAA_VARS: [&str; 5] = ["BAA_CONFIG", "BAA_STATE_DIR", "BAA_LISTEN", "BAA_WS_LISTEN", "BAA_TOKEN"];

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
