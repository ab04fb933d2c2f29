//! `--messages-file`: replays recorded final messages over the connection,
//! the way a plugin reports a backlog — pipelined, without waiting for each
//! ack, but never more than a window of them unanswered.
//!
//! Why a window: the daemon reads our frames while it writes its acks and
//! its own requests to us. A sender that wrote everything before reading
//! would stop reading while the daemon waits for us to read, and both
//! would stall. With at most `WINDOW` frames unanswered, every write is
//! followed by reads before the next batch.
//!
//! Each line of the file is one JSON object: the fields of a
//! `browser.final_message` (`type` may be left out). Its `id` is replaced
//! by `feed-<line>` so acks and errors can be matched to it.

use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Lines};

/// Most messages sent and not yet acknowledged or rejected.
pub const WINDOW: usize = 64;
const ID_PREFIX: &str = "feed-";

pub struct Feed {
    lines: Lines<BufReader<File>>,
    line_no: u64,
    in_flight: usize,
    pub sent: u64,
    pub acked: u64,
    pub rejected: u64,
    exhausted: bool,
}

impl Feed {
    pub fn open(path: &str) -> Result<Feed, String> {
        let file = File::open(path).map_err(|e| format!("--messages-file {path}: {e}"))?;
        Ok(Feed {
            lines: BufReader::new(file).lines(),
            line_no: 0,
            in_flight: 0,
            sent: 0,
            acked: 0,
            rejected: 0,
            exhausted: false,
        })
    }

    /// The next frames to send: as many as the window has room for.
    /// A line that is not a JSON object is an error (a broken recording
    /// should stop the replay, not be skipped quietly).
    pub fn next_frames(&mut self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        while !self.exhausted && self.in_flight < WINDOW {
            let Some(line) = self.lines.next() else {
                self.exhausted = true;
                break;
            };
            self.line_no += 1;
            let line = line.map_err(|e| format!("--messages-file line {}: {e}", self.line_no))?;
            if line.trim().is_empty() {
                continue;
            }
            let mut frame: Value = serde_json::from_str(&line)
                .map_err(|e| format!("--messages-file line {}: not JSON ({e})", self.line_no))?;
            let obj = frame
                .as_object_mut()
                .ok_or(format!("--messages-file line {}: not a JSON object", self.line_no))?;
            obj.entry("type").or_insert("browser.final_message".into());
            obj.insert("id".into(), format!("{ID_PREFIX}{}", self.line_no).into());
            out.push(frame.to_string());
            self.in_flight += 1;
            self.sent += 1;
        }
        Ok(out)
    }

    /// Takes an `ack` or `error` frame; true when it answered one of ours.
    pub fn answered(&mut self, frame: &Value, ok: bool) -> bool {
        let ours = frame["id"].as_str().is_some_and(|id| id.starts_with(ID_PREFIX));
        if ours && self.in_flight > 0 {
            self.in_flight -= 1;
            if ok {
                self.acked += 1;
            } else {
                self.rejected += 1;
            }
        }
        ours
    }

    /// Every line sent and answered.
    pub fn finished(&self) -> bool {
        self.exhausted && self.in_flight == 0
    }

    pub fn summary(&self) -> String {
        format!("messages-file: {} sent, {} acked, {} rejected", self.sent, self.acked, self.rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed_of(text: &str) -> Feed {
        let path = std::env::temp_dir().join(format!("sim-feed-{}-{}", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let feed = Feed::open(path.to_str().unwrap()).unwrap();
        let _ = std::fs::remove_file(&path);
        feed
    }

    #[test]
    fn sends_a_window_then_one_more_per_answer() {
        let lines: String = (0..WINDOW + 3).map(|i| format!("{{\"message_id\":\"m{i}\"}}\n")).collect();
        let mut feed = feed_of(&lines);
        let first = feed.next_frames().unwrap();
        assert_eq!(first.len(), WINDOW);
        let frame: Value = serde_json::from_str(&first[0]).unwrap();
        assert_eq!(frame["type"], "browser.final_message");
        assert_eq!(frame["id"], "feed-1");
        assert!(feed.next_frames().unwrap().is_empty());
        assert!(feed.answered(&json!({"type": "ack", "id": "feed-1"}), true));
        assert!(!feed.answered(&json!({"type": "ack", "id": "other"}), true));
        assert_eq!(feed.next_frames().unwrap().len(), 1);
        assert!(feed.answered(&json!({"type": "error", "id": "feed-2"}), false));
        assert_eq!(feed.next_frames().unwrap().len(), 1);
        assert!(feed.answered(&json!({"type": "ack", "id": "feed-3"}), true));
        assert_eq!(feed.next_frames().unwrap().len(), 1);
        assert!(feed.next_frames().unwrap().is_empty());
        for i in 4..=WINDOW + 3 {
            assert!(!feed.finished());
            feed.answered(&json!({"type": "ack", "id": format!("feed-{i}")}), true);
            assert!(feed.next_frames().unwrap().is_empty());
        }
        assert!(feed.finished());
        assert_eq!((feed.sent, feed.acked, feed.rejected), (WINDOW as u64 + 3, WINDOW as u64 + 2, 1));
    }

    #[test]
    fn a_broken_line_stops_the_replay() {
        let mut feed = feed_of("{\"a\":1}\nnot json\n");
        assert!(feed.next_frames().unwrap_err().contains("line 2"));
    }
}
