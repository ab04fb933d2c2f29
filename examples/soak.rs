//! The soak harness (`scripts/soak`, docs/RELIABILITY.md): the daemon under
//! 64 simulated plugins and 32 HTTP clients for a while (10 minutes by
//! default), its resident memory and thread count sampled from /proc every
//! 10 s; after the warm-up both must stay flat.
//!
//! Usage: soak BIN [--secs N] [--sample-secs N] [--warmup-secs N] [--keep]
//!
//! Load: 64 plugins (each says hello, reports 4 tabs and a login, sends a
//! final message every 100–400 ms and answers every delivery and relay),
//! 32 HTTP clients: 12 ingesting messages, 4 relaying, 15 reading the list
//! and status routes, 1 switching conversations and pausing/resuming the
//! system (so renewals flow). `--secs` is bounded to 1 h.
//!
//! Flat means, over the samples after the warm-up: the mean of the last
//! third is at most 10% (RSS) above the mean of the first third, and the
//! thread count never moves by more than 8 from its value at the end of
//! the warm-up.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http1.rs"]
mod http1;
#[path = "support/load.rs"]
mod load;

use load::{Ledger, Load, LoadConfig};

const MAX_SECS: u64 = 3600;

struct Sample {
    at: Duration,
    rss_kb: u64,
    /// Of `rss_kb`: anonymous memory (heap, stacks) and mapped files (the
    /// binary, SQLite's shared-memory WAL index).
    anon_kb: u64,
    file_kb: u64,
    threads: u64,
    fds: usize,
    acked: u64,
    deliveries: u64,
    relays: u64,
    reads: u64,
    errors: u64,
}

struct Options {
    bin: PathBuf,
    secs: u64,
    sample_secs: u64,
    warmup: Duration,
    keep: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut bin = None;
    let (mut secs, mut sample_secs, mut warmup_secs, mut keep) = (600u64, 10u64, None, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut num =
            || it.next().and_then(|v| v.parse::<u64>().ok()).unwrap_or_else(|| die(&format!("{arg} N")));
        match arg.as_str() {
            "--secs" => secs = num().min(MAX_SECS),
            "--sample-secs" => sample_secs = num().max(1),
            "--warmup-secs" => warmup_secs = Some(num()),
            "--keep" => keep = true,
            _ if bin.is_none() => bin = Some(PathBuf::from(arg)),
            _ => die(&format!("unexpected argument {arg}")),
        }
    }
    let bin =
        bin.unwrap_or_else(|| die("usage: soak BIN [--secs N] [--sample-secs N] [--warmup-secs N] [--keep]"));
    // Two minutes of a ten-minute run, a fifth of shorter ones.
    let warmup = Duration::from_secs(warmup_secs.unwrap_or((secs / 5).min(120)));
    Options { bin, secs, sample_secs, warmup, keep }
}

// The defaults would let almost nothing through (10 messages projected per
// tick, 10 relays and deliveries a minute per platform): the soak is about
// the daemon doing all of the work, for a long time.
const SETTINGS: &str = r#"{"timed_jobs": {"interval_ms": 500, "settle_delay_ms": 500,
                                        "max_messages_per_tick": 2000, "max_tasks_per_tick": 200},
                         "policy": {"rate_limit": {"requests_per_minute_per_platform": 1000000}}}"#;

fn main() {
    let o = options();
    let dir = daemon::scratch_dir("baa-soak");
    let config = dir.join("config.json");
    std::fs::write(&config, SETTINGS).expect("config");
    let mut d =
        daemon::start(&o.bin, &dir.join("state"), &config, &dir.join("daemon.log"), Duration::from_secs(60))
            .unwrap_or_else(|e| die(&e));
    let pid = d.child.id();
    println!("soak: {} s, pid {pid}, dir {}, ready in {} ms", o.secs, dir.display(), d.ready_in.as_millis());
    let ledger = Arc::new(Ledger::default());
    let load_config = LoadConfig {
        run: "soak".to_string(),
        tag: format!("soak{}", daemon::now_ms()),
        plugins: 64,
        ingest_clients: 12,
        relay_clients: 4,
        reader_clients: 15,
        switcher: true,
        conversations_per_plugin: 4,
        message_gap_ms: (100, 400),
        fail_percent: 5,
        record: false,
        seed: daemon::now_ms() as u64,
    };
    let load = Load::start(&load_config, d.http, &d.ws_url, &ledger);
    let samples = watch(pid, &o, &ledger);
    print_breakdown(pid);
    load.stop();
    daemon::terminate(pid);
    let status = d.child.wait().expect("wait");
    let flat = verdict(&samples, o.warmup);
    let c = &ledger.counts;
    println!(
        "soak: refused messages {}, failed relays {}, HTTP errors {}, plugin (re)connects {}",
        c.rejected.load(Relaxed),
        c.relays_failed.load(Relaxed),
        c.http_errors.load(Relaxed),
        c.connects.load(Relaxed)
    );
    println!("soak: clean stop: {status}");
    let ok = flat && status.success();
    if ok && !o.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::process::exit(if ok { 0 } else { 1 });
}

/// Samples every `sample_secs` until `secs` have passed, printing each row.
fn watch(pid: u32, o: &Options, ledger: &Ledger) -> Vec<Sample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    println!("\n| t (s) | RSS (MB) | anon / file (MB) | threads | fds | acked | deliveries | relays | reads | refused or failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut next = started;
    while started.elapsed() < Duration::from_secs(o.secs) {
        next += Duration::from_secs(o.sample_secs);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let s = sample(pid, started.elapsed(), ledger).unwrap_or_else(|| die("the daemon is gone"));
        println!(
            "| {} | {:.1} | {:.1} / {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            s.at.as_secs(),
            s.rss_kb as f64 / 1024.0,
            s.anon_kb as f64 / 1024.0,
            s.file_kb as f64 / 1024.0,
            s.threads,
            s.fds,
            s.acked,
            s.deliveries,
            s.relays,
            s.reads,
            s.errors
        );
        samples.push(s);
    }
    samples
}

fn sample(pid: u32, at: Duration, ledger: &Ledger) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let c = &ledger.counts;
    Some(Sample {
        at,
        rss_kb: field("VmRSS:")?,
        anon_kb: field("RssAnon:")?,
        file_kb: field("RssFile:")? + field("RssShmem:").unwrap_or(0),
        threads: field("Threads:")?,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0),
        acked: c.acked.load(Relaxed),
        deliveries: c.deliveries.load(Relaxed),
        relays: c.relays_ok.load(Relaxed),
        reads: c.reads.load(Relaxed),
        errors: c.http_errors.load(Relaxed) + c.rejected.load(Relaxed) + c.relays_failed.load(Relaxed),
    })
}

/// Where the resident memory is at the end, from /proc/PID/smaps: the main
/// heap, anonymous mappings of 1 MiB or more (glibc's per-thread arenas,
/// large blocks), smaller anonymous ones (thread stacks, small mappings),
/// mapped files.
fn print_breakdown(pid: u32) {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return };
    let (mut kind, mut size_kb) = ("files", 0u64);
    let mut rss = std::collections::BTreeMap::<&str, (u64, u32)>::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let (perms, path) = (fields.next().unwrap_or_default(), fields.nth(3));
            kind = match path {
                Some("[heap]") => "main heap",
                Some(p) if p.starts_with('[') => "other",
                Some(_) => "files",
                None if perms.starts_with("rw") => "anon",
                None => "other",
            };
        } else if first == "Size:" {
            size_kb = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        } else if first == "Rss:" {
            let kb: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            let key = match kind {
                "anon" if size_kb >= 1024 => "anonymous maps >= 1 MiB (allocator arenas, large blocks)",
                "anon" => "anonymous maps < 1 MiB (thread stacks, small maps)",
                other => other,
            };
            let e = rss.entry(key).or_default();
            e.0 += kb;
            e.1 += 1;
        }
    }
    println!("\nsoak: resident memory at the end, by mapping (/proc/{pid}/smaps):");
    for (key, (kb, maps)) in rss.into_iter().filter(|(_, (kb, _))| *kb > 0) {
        println!("  {:7.1} MB in {maps:4} maps: {key}", kb as f64 / 1024.0);
    }
}

/// Prints the flatness figures; true when both are flat.
fn verdict(samples: &[Sample], warmup: Duration) -> bool {
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at > warmup).collect();
    if after.len() < 3 {
        println!(
            "soak: only {} samples after the warm-up of {} s: no verdict",
            after.len(),
            warmup.as_secs()
        );
        return false;
    }
    let third = after.len() / 3;
    let mean = |xs: &[&Sample]| xs.iter().map(|s| s.rss_kb as f64).sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&after[..third]), mean(&after[after.len() - third..]));
    let growth = last / first - 1.0;
    let base = samples.iter().rev().find(|s| s.at <= warmup).map_or(after[0].threads, |s| s.threads);
    let drift = after.iter().map(|s| s.threads.abs_diff(base)).max().unwrap_or(0);
    let rss_flat = growth <= 0.10;
    let threads_flat = drift <= 8;
    println!(
        "\nsoak: after the {} s warm-up: RSS first third {:.1} MB, last third {:.1} MB ({:+.1}%) {}; threads {} at warm-up end, largest move {} {}",
        warmup.as_secs(),
        first / 1024.0,
        last / 1024.0,
        growth * 100.0,
        if rss_flat { "flat" } else { "GROWING" },
        base,
        drift,
        if threads_flat { "flat" } else { "MOVING" },
    );
    rss_flat && threads_flat
}

fn die(msg: &str) -> ! {
    eprintln!("soak: {msg}");
    std::process::exit(2)
}
