//! `conductor.exec`: `sh -c COMMAND` in a process group of its own, with a
//! timeout, its output captured, and nothing left behind. The whole group
//! is killed when the timeout passes, when the daemon stops, and also when
//! the shell itself has ended — so a background child (`sleep 99 &`) never
//! outlives its instruction and never holds the output pipes open.
//!
//! Output: each stream keeps its first `KEEP_BYTES` in memory (the rest is
//! read and counted, so the command never blocks on a full pipe); the
//! artifact file gets all that is kept, the result the first
//! `RESULT_BYTES` of each stream. The child gets no stdin and no
//! `BAA_TOKEN` (the daemon's own API token, which an assistant must not
//! be able to print) and not the daemon's allocator setting (it gets the
//! `GLIBC_TUNABLES` the daemon was started with, `crate::alloc`), and
//! `BAA_INSTRUCTION_ID` names its instruction.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver};

/// Of each stream, kept for the artifact (memory is bounded by twice this,
/// one instruction at a time).
pub const KEEP_BYTES: usize = 4 << 20;
/// Of each stream, in the execution's `result` (docs/BAA.md: 64 KiB).
pub const RESULT_BYTES: usize = 64 << 10;
/// How long the output pipes may stay open after the group is killed (a
/// process that left the group on purpose, with `setsid`, may hold them).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

extern "C" {
    /// POSIX `kill(2)`; a negative pid names a process group. Declared
    /// here rather than pulling in the `libc` crate for one call.
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGKILL: i32 = 9;

pub struct Request<'a> {
    pub command: &'a str,
    pub cwd: &'a Path,
    pub timeout: Duration,
    pub instruction_id: &'a str,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    /// Killed by a signal it did not get from us.
    Signalled(i32),
    TimedOut,
    /// The daemon began to stop.
    Interrupted,
}

/// One captured stream.
#[derive(Debug, Default)]
pub struct Captured {
    pub kept: Vec<u8>,
    /// Every byte read, kept or not.
    pub total: u64,
    /// The pipe was still open when the drain grace ran out.
    pub abandoned: bool,
}

#[derive(Debug)]
pub struct Outcome {
    pub ended: Ended,
    pub stdout: Captured,
    pub stderr: Captured,
    pub duration_ms: u64,
}

/// Runs the command. `interrupt` is the caller's inbox, watched while the
/// command runs: a message for which `is_stop` holds (or the inbox closing)
/// kills the group and ends with `Interrupted`; any other message is taken
/// and dropped, so the inbox may carry only wake-ups besides the stop.
pub fn run<M>(
    req: &Request<'_>,
    interrupt: &Receiver<M>,
    is_stop: fn(&M) -> bool,
) -> std::io::Result<Outcome> {
    let started = Instant::now();
    let mut command = Command::new("sh");
    crate::alloc::restore_tunables(&mut command);
    let mut child = command
        .arg("-c")
        .arg(req.command)
        .current_dir(req.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("BAA_TOKEN")
        .env("BAA_INSTRUCTION_ID", req.instruction_id)
        .process_group(0)
        .spawn()?;
    let group = child.id() as i32;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let (done_tx, done) = bounded::<std::io::Result<ExitStatus>>(1);
    std::thread::Builder::new().name("baa-exec-wait".into()).spawn(move || {
        let _ = done_tx.send(child.wait());
    })?;
    let deadline = started + req.timeout;
    let ended = loop {
        select! {
            recv(done) -> status => break decode(status.unwrap_or_else(|_| Err(std::io::ErrorKind::Other.into()))),
            recv(interrupt) -> msg => {
                if msg.as_ref().map_or(true, is_stop) {
                    kill_group(group);
                    let _ = done.recv();
                    break Ended::Interrupted;
                }
            }
            default(deadline.saturating_duration_since(Instant::now())) => {
                kill_group(group);
                let _ = done.recv();
                break Ended::TimedOut;
            }
        }
    };
    // The shell is gone; whatever it left running goes with it.
    kill_group(group);
    let drain_until = Instant::now() + DRAIN_GRACE;
    let stdout = collect(stdout, drain_until);
    let stderr = collect(stderr, drain_until);
    Ok(Outcome { ended, stdout, stderr, duration_ms: started.elapsed().as_millis() as u64 })
}

fn kill_group(group: i32) {
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    // Failure (ESRCH: the group is already gone) is the expected case.
    unsafe {
        kill(-group, SIGKILL);
    }
}

fn decode(status: std::io::Result<ExitStatus>) -> Ended {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Ended::Exited(code),
            (None, Some(sig)) => Ended::Signalled(sig),
            (None, None) => Ended::Signalled(0),
        },
        Err(_) => Ended::Signalled(0),
    }
}

/// A thread that reads a pipe to its end, keeping the first `KEEP_BYTES`.
fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> Receiver<Captured> {
    let (tx, rx) = bounded(1);
    let spawned = std::thread::Builder::new().name("baa-exec-read".into()).spawn(move || {
        let mut captured = Captured::default();
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 16 << 10];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = KEEP_BYTES.saturating_sub(captured.kept.len());
                        captured.kept.extend_from_slice(&buf[..n.min(room)]);
                        captured.total += n as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let _ = tx.send(captured);
    });
    if spawned.is_err() {
        let (tx, rx) = bounded(1);
        let _ = tx.send(Captured { abandoned: true, ..Captured::default() });
        return rx;
    }
    rx
}

fn collect(rx: Receiver<Captured>, until: Instant) -> Captured {
    rx.recv_deadline(until).unwrap_or(Captured { abandoned: true, ..Captured::default() })
}

/// Writes the artifact `DIR/<instruction_id>.txt` (mode 0600, the
/// directory 0700: command output may hold secrets) and returns its path.
pub fn write_artifact(dir: &Path, req: &Request<'_>, out: &Outcome) -> std::io::Result<PathBuf> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join(format!("{}.txt", req.instruction_id));
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
    let ended = match out.ended {
        Ended::Exited(code) => format!("exit code {code}"),
        Ended::Signalled(sig) => format!("killed by signal {sig}"),
        Ended::TimedOut => format!("timed out after {} ms; process group killed", req.timeout.as_millis()),
        Ended::Interrupted => "interrupted: the daemon stopped; process group killed".to_string(),
    };
    let mut text = format!(
        "instruction: {}\ncwd: {}\ncommand:\n{}\nended: {ended}\nduration_ms: {}\n",
        req.instruction_id,
        req.cwd.display(),
        req.command,
        out.duration_ms
    );
    for (name, c) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let kept = if (c.kept.len() as u64) < c.total {
            format!(", first {} kept", c.kept.len())
        } else {
            String::new()
        };
        text.push_str(&format!("--- {name} ({} bytes{kept}) ---\n", c.total));
        file.write_all(text.as_bytes())?;
        text.clear();
        file.write_all(&c.kept)?;
        if !c.kept.is_empty() && !c.kept.ends_with(b"\n") {
            file.write_all(b"\n")?;
        }
    }
    file.write_all(b"--- end ---\n")?;
    Ok(path)
}
