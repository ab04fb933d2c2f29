//! What the person sees: the protocol transcript on stdout (`<- ` received,
//! `-> ` sent, one frame per line), status lines on stdout, errors on
//! stderr; and the counters behind the final summary.

use std::io::{self, BufWriter, Stdout, Write};
use std::time::Instant;

#[derive(Default)]
pub struct Stats {
    pub received: u64,
    pub sent: u64,
    pub proxy_deliveries: u64,
    pub actions: u64,
    pub api_requests: u64,
    /// Requests whose answer went out.
    pub answered: u64,
    pub error_frames: u64,
}

pub struct Output {
    quiet: bool,
    /// Buffered so that a stream of N events costs one write, not N; flushed
    /// after every frame handled, so a person watching sees no lag.
    stdout: BufWriter<Stdout>,
    started: Instant,
    pub stats: Stats,
}

impl Output {
    pub fn new(quiet: bool) -> Self {
        Output {
            quiet,
            stdout: BufWriter::with_capacity(64 * 1024, io::stdout()),
            started: Instant::now(),
            stats: Stats::default(),
        }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    pub fn sent(&mut self, text: &str) {
        self.stats.sent += 1;
        self.transcript("->", text);
    }

    pub fn received(&mut self, text: &str) {
        self.stats.received += 1;
        self.transcript("<-", text);
    }

    /// A non-protocol event in the transcript (pings, our close frame).
    pub fn note(&mut self, arrow: &str, what: &str) {
        if !self.quiet {
            let _ = writeln!(self.stdout, "{arrow} [{what}]");
        }
    }

    /// Always shown, even with --quiet.
    pub fn status(&mut self, line: &str) {
        let _ = writeln!(self.stdout, "{line}");
    }

    pub fn error(&mut self, line: &str) {
        self.flush();
        eprintln!("baa-plugin-sim: {line}");
    }

    /// Write errors (a closed pipe) are ignored: the transcript is a
    /// courtesy, the protocol must go on.
    pub fn flush(&mut self) {
        let _ = self.stdout.flush();
    }

    pub fn summary(&mut self) {
        let s = &self.stats;
        let line = format!(
            "summary: {:.1}s, received {} frames, sent {}; requests: {} proxy_delivery, {} action, \
             {} api_request; answered {}; error frames {}",
            self.started.elapsed().as_secs_f64(),
            s.received,
            s.sent,
            s.proxy_deliveries,
            s.actions,
            s.api_requests,
            s.answered,
            s.error_frames,
        );
        self.status(&line);
        self.flush();
    }

    fn transcript(&mut self, arrow: &str, text: &str) {
        if self.quiet {
            return;
        }
        // One frame per line even if the peer pretty-printed its JSON: raw
        // newlines can only be whitespace between JSON tokens, so a space
        // keeps the frame valid JSON.
        if text.contains(['\n', '\r']) {
            let flat = text.replace(['\n', '\r'], " ");
            let _ = writeln!(self.stdout, "{arrow} {flat}");
        } else {
            let _ = writeln!(self.stdout, "{arrow} {text}");
        }
    }
}
