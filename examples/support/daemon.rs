//! Starting the real daemon for the load harnesses (chaos, soak): spawn
//! `BIN serve` on port 0 with a state dir and a config file, time the spawn
//! up to the ready line, and learn both addresses (HTTP from the ready
//! line, WebSocket from `conductor.json`, which is written before it).
//! Included with `#[path]`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub http: SocketAddr,
    pub ws_url: String,
    /// Spawn → ready line.
    pub ready_in: Duration,
}

/// Starts the daemon and waits for its ready line (at most `wait`).
/// stderr goes to `log` (`RUST_LOG=warn` unless set).
pub fn start(
    bin: &Path,
    state_dir: &Path,
    config: &Path,
    log: &Path,
    wait: Duration,
) -> Result<Daemon, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0", "--state-dir"])
        .arg(state_dir)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        // Keep reading so the daemon never blocks on a full pipe.
        for _ in lines {}
    });
    let line = match rx.recv_timeout(wait) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no ready line within {wait:?} (see {})", log.display()));
        }
    };
    let ready_in = started.elapsed();
    let http = line
        .rsplit("http://")
        .next()
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("unexpected ready line {line:?}"))?;
    let ws_url = ready_file_ws_url(&state_dir.join("conductor.json"))?;
    Ok(Daemon { child, http, ws_url, ready_in })
}

/// SIGTERM, the clean stop (`Child::kill` is SIGKILL). Through the shell's
/// own `kill`, which every system has, since std has no signal call.
pub fn terminate(pid: u32) {
    let _ = Command::new("sh").args(["-c", "kill -TERM \"$0\"", &pid.to_string()]).status();
}

fn ready_file_ws_url(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    doc["ws_url"].as_str().map(str::to_string).ok_or_else(|| "conductor.json has no ws_url".to_string())
}

/// A fresh directory under the system temp dir (or `$CHAOS_DIR`).
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("CHAOS_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("{name}-{}-{}", std::process::id(), now_ms()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A small xorshift generator: the harnesses need variety, not quality,
/// and the seed is printed so a run can be repeated.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `lo..hi` (`lo` when empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo)
        }
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
