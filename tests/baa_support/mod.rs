//! Helpers of the instruction-block tests (`tests/baa_*.rs`): a daemon with
//! `baa` switched on over a temporary root directory, an `auto`
//! conversation whose tab a simulator serves, assistant messages with
//! blocks, and the executions API. Built on `tests/support` and
//! `tests/renewal_support`; a test file declares all three:
//! ```ignore
//! mod support;
//! mod renewal_support;
//! mod baa_support;
//! ```
//! Every wait polls a condition with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::renewal_support::{auto_conversation, config, ingest, log_tail, message, Sim, WAIT};
use crate::support::{enc, wait_until, Daemon, DaemonOpts, TempDir};

pub const CLIENT: &str = "sim-baa";
pub const TAB: i64 = 17;

/// A daemon with every tool allowed inside `root` (unless `over` says
/// otherwise), fast ticks, and a reply retry 300 ms after a failure.
pub struct Baa {
    pub d: Daemon,
    pub root: PathBuf,
    /// Holds the root directory for the test's life.
    _root_dir: TempDir,
}

impl Baa {
    pub fn start(over: Value) -> Baa {
        let root_dir = TempDir::new("baa-root");
        let root = std::fs::canonicalize(root_dir.path()).unwrap();
        let mut c = config(json!({
            "renewal": { "retry_base_delay_ms": 300, "retry_max_delay_ms": 300 },
            "baa": {
                "enabled": true,
                "allowed_tools": ["describe", "status", "exec", "files.read", "files.write",
                                  "renewal.pause", "renewal.auto", "renewal.manual"],
                "allowed_roots": [root.display().to_string()],
            }
        }));
        crate::renewal_support::merge(&mut c, over);
        let d = Daemon::start(DaemonOpts::new().config(c));
        Baa { d, root, _root_dir: root_dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// A connected simulator answering as `mode`, serving tab `TAB`.
    pub fn sim(&self, mode: &str) -> Sim {
        Sim::connect(&self.d, CLIENT, &["--mode", mode])
    }

    /// An `auto` conversation `conv` whose active link is the simulator's tab.
    pub fn conversation(&self, conv: &str) -> String {
        auto_conversation(&self.d, "chatgpt", conv, Some(CLIENT), Some(TAB))
    }

    /// Ingests an assistant message in `conv`; returns the ingest answer.
    pub fn say(&self, conv: &str, message_id: &str, text: &str) -> Value {
        ingest(&self.d, &message("chatgpt", conv, message_id, "assistant", text, Some(CLIENT), Some(TAB)))
    }

    pub fn executions(&self, query: &str) -> Vec<Value> {
        let data = self.d.get(&format!("/v1/executions?limit=500&{query}")).data();
        data["executions"].as_array().unwrap().clone()
    }

    /// The message's executions in block order.
    pub fn of_message(&self, message_id: &str) -> Vec<Value> {
        let mut list = self.executions(&format!("message_id={}", enc(message_id)));
        list.sort_by_key(|e| e["block_index"].as_i64());
        list
    }

    /// Waits until the message has `n` executions, all final.
    pub fn wait_final(&self, message_id: &str, n: usize) -> Vec<Value> {
        let mut last = Vec::new();
        let ok = wait_until(WAIT, || {
            last = self.of_message(message_id);
            last.len() == n
                && last.iter().all(|e| !["pending", "running"].contains(&e["status"].as_str().unwrap()))
        });
        assert!(ok, "executions of {message_id} not final: {last:#?}\nstderr tail:\n{}", self.stderr_tail());
        last
    }

    /// The renewal jobs of a message (the `[baa]` reply is one).
    pub fn jobs_of(&self, message_id: &str) -> Vec<Value> {
        let data = self.d.get(&format!("/v1/renewal/jobs?message_id={}", enc(message_id))).data();
        data["jobs"].as_array().unwrap().clone()
    }

    /// Waits for the message's reply job to satisfy `pred`.
    pub fn wait_reply(&self, message_id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Vec::new();
        let ok = wait_until(WAIT, || {
            last = self.jobs_of(message_id);
            last.len() == 1 && pred(&last[0])
        });
        assert!(ok, "reply of {message_id} never {what}: {last:#?}\nlog:\n{}", log_tail(&self.d, 20));
        last[0].clone()
    }

    pub fn stderr_tail(&self) -> String {
        let text = self.d.stderr_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A fenced `baa` block.
pub fn block(header: &str, body: &str) -> String {
    if body.is_empty() {
        format!("```baa\n{header}\n```\n")
    } else {
        format!("```baa\n{header}\n{body}\n```\n")
    }
}

/// `(status, error)` of each execution.
pub fn outcomes(execs: &[Value]) -> Vec<(String, Option<String>)> {
    execs
        .iter()
        .map(|e| (e["status"].as_str().unwrap().to_string(), e["error"].as_str().map(str::to_string)))
        .collect()
}

pub fn ok() -> (String, Option<String>) {
    ("succeeded".to_string(), None)
}

pub fn outcome(status: &str, error: &str) -> (String, Option<String>) {
    (status.to_string(), Some(error.to_string()))
}

/// Lines in a marker file (one per run of a command that appends to it).
pub fn runs(marker: &Path) -> usize {
    std::fs::read_to_string(marker).map(|t| t.lines().count()).unwrap_or(0)
}
