//! The timed-jobs JSONL log: one line per stage in
//! `logs/timed-jobs/YYYY-MM-DD.jsonl` (UTC). Runners hand lines to a channel
//! and never wait for the disk; a named thread appends them (a busy
//! daemon's lines in bursts, one write each, at most 10 ms late), switches
//! files at midnight UTC, and deletes files older than `log_retention_days`.

use crate::util::JoinOnDrop;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde::Serialize;
use serde_json::Value;

/// One stage of one run.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub ts: i64,
    pub runner: &'static str,
    pub batch_id: String,
    pub stage: &'static str,
    pub result: String,
    pub details: Value,
}

/// Where runners send their lines. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct LogSink {
    tx: Sender<LogLine>,
    dir: PathBuf,
}

impl LogSink {
    pub fn log(&self, line: LogLine) {
        // The writer thread only stops at shutdown, after the runners.
        let _ = self.tx.send(line);
    }

    /// One line of `runner`'s run `batch_id`, stamped now.
    pub fn run_line(
        &self,
        runner: &'static str,
        batch_id: &str,
        stage: &'static str,
        result: &str,
        details: Value,
    ) {
        self.log(LogLine {
            ts: crate::util::now_ms(),
            runner,
            batch_id: batch_id.to_string(),
            stage,
            result: result.to_string(),
            details,
        });
    }

    /// The file a line written at `ts` goes to: what jobs record as `log_path`.
    pub fn path_for(&self, ts: i64) -> PathBuf {
        self.dir.join(format!("{}.jsonl", utc_date(ts)))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The `timed-jobs-log` thread. Dropping it is [`LogHandle::join`].
pub struct LogHandle {
    /// Declared before `join`: dropped first, so the thread can end.
    pub sink: LogSink,
    /// Joined on drop, after the fields above.
    _join: JoinOnDrop<()>,
}

impl LogHandle {
    /// Stops after every line sent before is written. All sinks must be
    /// dropped first (the thread ends when the channel closes).
    pub fn join(self) {
        drop(self);
    }
}

pub fn spawn(dir: PathBuf, retention_days: u64) -> std::io::Result<LogHandle> {
    let (tx, rx) = unbounded();
    let writer = LogWriter { dir: dir.clone(), retention_days, day: String::new(), file: None };
    let join = JoinOnDrop::spawn("timed-jobs-log", move || writer.run(rx))?;
    Ok(LogHandle { sink: LogSink { tx, dir }, _join: join })
}

struct LogWriter {
    dir: PathBuf,
    retention_days: u64,
    day: String,
    file: Option<File>,
}

/// Longest nap between two appends while lines keep coming.
const BURST_NAP: Duration = Duration::from_millis(10);

/// Lines appended with one write at most.
const MAX_BATCH: usize = 1024;

/// One line as written: the fields in the order they always had (sorted).
#[derive(Serialize)]
struct LineOut<'a> {
    batch_id: &'a str,
    details: &'a Value,
    result: &'a str,
    runner: &'a str,
    stage: &'a str,
    ts: i64,
}

impl LogWriter {
    /// Appends what is queued with one write per day file, then, if that
    /// was more than one line (a busy daemon: three lines per renewal job),
    /// naps briefly: lines sent meanwhile wait in the channel instead of
    /// waking this thread one by one, and the next write takes them all.
    /// An idle daemon's single lines are written at once.
    fn run(mut self, rx: Receiver<LogLine>) {
        let mut batch = Vec::new();
        while let Ok(first) = rx.recv() {
            batch.push(first);
            batch.extend(rx.try_iter().take(MAX_BATCH - 1));
            self.write(&batch);
            let busy = batch.len() > 1;
            batch.clear();
            if busy {
                std::thread::sleep(BURST_NAP);
            }
        }
        if let Some(file) = &mut self.file {
            let _ = file.flush();
        }
    }

    /// Appends `lines` in order, each to the file of its day.
    fn write(&mut self, lines: &[LogLine]) {
        let mut text = Vec::new();
        for line in lines {
            let day = utc_date(line.ts);
            if day != self.day || self.file.is_none() {
                self.append(&text);
                text.clear();
                self.day = day;
                self.file = self.open();
                self.prune();
            }
            let out = LineOut {
                batch_id: &line.batch_id,
                details: &line.details,
                result: &line.result,
                runner: line.runner,
                stage: line.stage,
                ts: line.ts,
            };
            if serde_json::to_writer(&mut text, &out).is_ok() {
                text.push(b'\n');
            }
        }
        self.append(&text);
    }

    /// One write for whole lines with their newlines (`writeln!` makes two
    /// per line): a crash can cut at most the last line, which the next
    /// start ends (`end_last_line`) so the lines after it stay readable.
    fn append(&mut self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(text) {
                log::warn!("timed-jobs log: cannot append: {e}");
            }
        }
    }

    fn open(&self) -> Option<File> {
        let path = self.dir.join(format!("{}.jsonl", self.day));
        match OpenOptions::new().create(true).append(true).read(true).open(&path) {
            Ok(mut file) => {
                end_last_line(&mut file);
                Some(file)
            }
            Err(e) => {
                log::warn!("timed-jobs log: cannot open {}: {e}", path.display());
                None
            }
        }
    }

    /// Deletes day files older than the retention, judged by their names.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let oldest_kept = utc_date(crate::util::now_ms() - self.retention_days as i64 * 86_400_000);
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(day) = name.strip_suffix(".jsonl") else { continue };
            if day.len() == 10 && day < oldest_kept.as_str() {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    log::warn!("timed-jobs log: cannot delete {name}: {e}");
                }
            }
        }
    }
}

/// A crash or a full disk can leave the last line without its newline;
/// ending it first keeps the next line readable on its own.
fn end_last_line(file: &mut File) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(len) = file.seek(SeekFrom::End(0)) else { return };
    if len == 0 || file.seek(SeekFrom::Start(len - 1)).is_err() {
        return;
    }
    let mut last = [0u8; 1];
    if file.read_exact(&mut last).is_ok() && last[0] != b'\n' {
        let _ = file.write_all(b"\n");
    }
}

/// `YYYY-MM-DD` of a millisecond timestamp, in UTC (Howard Hinnant's
/// civil-from-days algorithm; no time crate needed for one conversion).
pub fn utc_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(ts: i64, n: u64) -> LogLine {
        LogLine {
            ts,
            runner: "renewal.dispatcher",
            batch_id: format!("b{n}"),
            stage: "job_completed",
            result: "ok".into(),
            details: serde_json::json!({ "n": n, "text": "a \"quoted\"\nline" }),
        }
    }

    /// A burst of lines is written whole, in order, each line to its own
    /// day's file (a burst can straddle midnight), as the JSON object the
    /// log has always had.
    #[test]
    fn a_burst_goes_line_by_line_to_each_days_file() {
        let dir = crate::store::test_dir::TestDir::new("timed-log");
        let day = 1_795_298_636_426; // 2026-11-21
        let next = day + 86_400_000;
        let log = spawn(dir.path().to_path_buf(), 10_000).unwrap();
        for (i, ts) in [day, day + 1, next, day + 2, next + 1].into_iter().enumerate() {
            log.sink.log(line(ts, i as u64));
        }
        log.join();
        let read = |date: &str| std::fs::read_to_string(dir.path().join(format!("{date}.jsonl"))).unwrap();
        let first = read("2026-11-21");
        let ns = |text: &str| -> Vec<u64> {
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap()["details"]["n"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(ns(&first), [0, 1, 3]);
        assert_eq!(ns(&read("2026-11-22")), [2, 4]);
        let expected = serde_json::json!({
            "ts": day, "runner": "renewal.dispatcher", "batch_id": "b0", "stage": "job_completed",
            "result": "ok", "details": { "n": 0, "text": "a \"quoted\"\nline" },
        })
        .to_string();
        assert_eq!(first.lines().next().unwrap(), expected);
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(1_711_800_000_000), "2024-03-30");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_795_298_636_426), "2026-11-21");
        assert_eq!(utc_date(86_399_999), "1970-01-01");
    }
}
