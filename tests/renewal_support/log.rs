//! The timed-jobs JSONL log as the renewal tests read it: its lines, waits
//! on a line, and the dispatcher's story of one job.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use super::WAIT;
use crate::support::{wait_until, Daemon};

pub fn log_dir(d: &Daemon) -> PathBuf {
    d.state_dir().join("logs").join("timed-jobs")
}

/// The path of today's (UTC) log file, as a job's `log_path` names it.
pub fn today_log(d: &Daemon) -> String {
    log_dir(d).join(format!("{}.jsonl", utc_date(crate::support::now_ms()))).display().to_string()
}

/// `YYYY-MM-DD` (UTC) of a millisecond timestamp, computed independently of
/// the daemon (days since the epoch → civil date).
pub fn utc_date(ms: i64) -> String {
    let mut days = ms.div_euclid(86_400_000);
    let mut year = 1970i64;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let months = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= months[month] {
        days -= months[month];
        month += 1;
    }
    format!("{year:04}-{:02}-{:02}", month + 1, days + 1)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Every complete line of every `*.jsonl` file of the log dir, oldest file
/// first. A last line still being written (no newline yet) is left out.
pub fn log_lines(d: &Daemon) -> Vec<Value> {
    let mut files: Vec<PathBuf> = match fs::read_dir(log_dir(d)) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(_) => return Vec::new(),
    };
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => continue,
        };
        for line in complete.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: line is not JSON ({e}): {line}", file.display()));
            out.push(v);
        }
    }
    out
}

/// Lines matching `pred`.
pub fn log_find(d: &Daemon, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    log_lines(d).into_iter().filter(|l| pred(l)).collect()
}

/// Waits for a line matching `pred`; panics with the log (tail) otherwise.
pub fn wait_log(d: &Daemon, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = log_lines(d).into_iter().find(|l| pred(l));
        found.is_some()
    });
    if !ok {
        panic!("no log line {what} within {WAIT:?}; log tail:\n{}", log_tail(d, 40));
    }
    found.unwrap()
}

/// The last `n` log lines, one per line, for failure messages.
pub fn log_tail(d: &Daemon, n: usize) -> String {
    let lines = log_lines(d);
    let start = lines.len().saturating_sub(n);
    lines[start..].iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")
}

/// A line of `runner` with this `stage` (and `result` when given).
pub fn is_stage(l: &Value, runner: &str, stage: &str, result: Option<&str>) -> bool {
    l["runner"] == runner && l["stage"] == stage && result.is_none_or(|r| l["result"] == r)
}

/// A dispatcher line about `job_id`.
pub fn is_job_line(l: &Value, job_id: &str, stage: &str) -> bool {
    l["runner"] == "renewal.dispatcher" && l["stage"] == stage && l["details"]["job_id"] == job_id
}

/// Every dispatcher line about `job_id`, in order.
pub fn job_lines(d: &Daemon, job_id: &str) -> Vec<Value> {
    log_find(d, |l| l["runner"] == "renewal.dispatcher" && l["details"]["job_id"] == job_id)
}

/// `(stage, result)` of every dispatcher line about `job_id`, for messages.
pub fn job_story(d: &Daemon, job_id: &str) -> Vec<(String, String)> {
    job_lines(d, job_id)
        .iter()
        .map(|l| {
            (l["stage"].as_str().unwrap_or("").to_string(), l["result"].as_str().unwrap_or("").to_string())
        })
        .collect()
}
