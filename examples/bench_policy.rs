//! Micro-benchmark of the request policy (`scripts/bench_policy`), on the
//! library directly: the cost of one `Policy::admit` + `Lease::complete`
//! pair, uncontended and with 8 threads, against a floor measured in the
//! same run.
//!
//! Usage:
//!   bench_policy SECS_PER_SCENARIO [BATCH]
//!
//! The policy is built as the daemon builds it (`Policy::new` with the
//! `SystemClock`) from a permissive config: a rate limit of 1e9 per minute
//! (the 60 s window is kept, so every admission is still charged to the
//! platform's window), zero jitter, default everything else. Scenarios:
//!   uncontended     1 thread, 1 target;
//!   8t8             8 threads, each on its own target (8 clients, one
//!                   platform: they share the platform's rate window);
//!   8t1             8 threads on the same target: one request in flight per
//!                   target, so the others wait in its FIFO queue and are
//!                   woken one by one (a thread hand-off per pair);
//!   uncontended_cb  as uncontended, but `on_change` does what the daemon's
//!                   does (an unbounded channel send to a thread that drains
//!                   it, like `Store::mark_policy_dirty` to the store writer).
//! Each thread times batches of BATCH pairs (default 1000); a pair is
//! `admit(Target::new(..), request_id, AdmitOptions::default())` then
//! `lease.complete(Outcome::Success)`. Reported per scenario: the median
//! and p99 over batches of (batch time / BATCH) — the time one thread
//! spends per pair, waiting included — and `wall_ns`, the run's wall time
//! divided by all pairs of all threads (the inverse of the throughput).
//!
//! Floor (baseline): the same threads doing the least a shared per-target
//! policy must do — build the target, lock a `parking_lot::Mutex` around a
//! `BTreeMap<Target, _>`, mark it in flight, unlock; lock again, clear it,
//! unlock — with no rules, no queue and no clock. For 8t1 the floor is one
//! fair mutex held for the whole pair and released with `unlock_fair`
//! (handed straight to the longest waiter: the least a strictly FIFO,
//! one-at-a-time target can cost), doing the same map updates.
//!
//! `bench_policy doc-size DB` prints the length of the policy document
//! saved in a daemon's database.
//!
//! Finally it reports the size and serialisation time of the persisted
//! policy document after the uncontended run (`persisted_json`, which the
//! daemon's store writer calls at most every `persistence_debounce_ms` while
//! requests flow): every admission of the last `window_ms` is in it.
//!
//! Output: `key=value` lines, `SCENARIO.median_ns`, `SCENARIO.p99_ns`,
//! `SCENARIO.wall_ns`, `SCENARIO.pairs`, and the same with `floor.` prefix.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use baa_conductor::config;
use baa_conductor::policy::{AdmitOptions, Outcome, Policy, SystemClock, Target};
use parking_lot::Mutex;

fn permissive() -> config::Policy {
    let mut c = config::Policy::default();
    c.rate_limit.requests_per_minute_per_platform = 1_000_000_000;
    c.jitter = config::Jitter { min_ms: 0, max_ms: 0, mu_ms: 0, sigma_ms: 0 };
    c
}

struct Stats {
    per_pair_ns: Vec<f64>,
    pairs: u64,
    wall: Duration,
}

impl Stats {
    fn print(&self, name: &str) {
        let mut v = self.per_pair_ns.clone();
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        let q = |p: f64| v[(((p / 100.0) * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        println!("{name}.median_ns={:.0}", q(50.0));
        println!("{name}.p99_ns={:.0}", q(99.0));
        println!("{name}.wall_ns={:.0}", self.wall.as_nanos() as f64 / self.pairs as f64);
        println!("{name}.pairs={}", self.pairs);
        println!("{name}.batches={}", v.len());
    }
}

/// Runs `threads` threads for `secs`, each calling `pair(thread)` BATCH
/// times per timed batch.
fn run(threads: usize, secs: f64, batch: usize, pair: impl Fn(usize) + Sync) -> Stats {
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    let (results, wall) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, barrier, pair) = (&stop, &barrier, &pair);
                s.spawn(move || {
                    let mut per = Vec::new();
                    let mut pairs = 0u64;
                    barrier.wait();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        for _ in 0..batch {
                            pair(t);
                        }
                        per.push(t0.elapsed().as_nanos() as f64 / batch as f64);
                        pairs += batch as u64;
                    }
                    (per, pairs)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        let results: Vec<(Vec<f64>, u64)> =
            handles.into_iter().map(|h| h.join().expect("bench thread")).collect();
        (results, t0.elapsed())
    });
    let mut per_pair_ns = Vec::new();
    let mut pairs = 0;
    for (per, n) in results {
        per_pair_ns.extend(per);
        pairs += n;
    }
    Stats { per_pair_ns, pairs, wall }
}

fn policy_pairs(
    name: &str,
    threads: usize,
    targets: usize,
    secs: f64,
    batch: usize,
    daemon_cb: bool,
) -> Arc<Policy> {
    let on_change: Box<dyn Fn() + Send + Sync> = if daemon_cb {
        let (tx, rx) = crossbeam_channel::unbounded::<()>();
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Box::new(move || {
            let _ = tx.send(());
        })
    } else {
        Box::new(|| {})
    };
    let policy = Policy::new(permissive(), Arc::new(SystemClock), on_change);
    let clients: Vec<String> = (0..targets).map(|t| format!("bench-client-{t}")).collect();
    let ids: Vec<String> = (0..threads).map(|t| format!("req_bench_{t:04}")).collect();
    let stats = run(threads, secs, batch, |t| {
        let target = Target::new(clients[t % targets].as_str(), "chatgpt");
        let lease = policy.admit(target, &ids[t], AdmitOptions::default()).expect("permissive policy admits");
        lease.complete(Outcome::Success);
    });
    stats.print(name);
    policy
}

fn floor_pairs(name: &str, threads: usize, targets: usize, secs: f64, batch: usize) {
    let map: Mutex<BTreeMap<Target, Option<String>>> = Mutex::new(BTreeMap::new());
    let clients: Vec<String> = (0..targets).map(|t| format!("bench-client-{t}")).collect();
    let ids: Vec<String> = (0..threads).map(|t| format!("req_bench_{t:04}")).collect();
    let stats = run(threads, secs, batch, |t| {
        let target = Target::new(clients[t % targets].as_str(), "chatgpt");
        map.lock().insert(target.clone(), Some(ids[t].clone()));
        if let Some(slot) = map.lock().get_mut(&target) {
            *slot = None;
        }
    });
    stats.print(name);
}

/// The least a strictly one-at-a-time, FIFO target can cost with `threads`
/// threads: one `parking_lot::Mutex` held for the whole pair and released
/// with `unlock_fair`, which hands it straight to the longest waiter (a
/// FIFO hand-off, like the policy's queue), doing the floor's map updates
/// while held.
fn fair_floor(name: &str, threads: usize, secs: f64, batch: usize) {
    let map: Mutex<BTreeMap<Target, Option<String>>> = Mutex::new(BTreeMap::new());
    let id = "req_bench_0000".to_string();
    let stats = run(threads, secs, batch, |_| {
        let target = Target::new("bench-client-0", "chatgpt");
        let mut g = map.lock();
        g.insert(target.clone(), Some(id.clone()));
        if let Some(slot) = g.get_mut(&target) {
            *slot = None;
        }
        parking_lot::MutexGuard::unlock_fair(g);
    });
    stats.print(name);
}

/// `doc-size DB`: length of the saved policy document.
fn doc_size(db: &str) {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("cannot open {db}: {e}"));
    let n: Option<i64> = conn
        .query_row(
            "SELECT length(value_json) FROM browser_request_policy_state WHERE state_key = 'global'",
            [],
            |r| r.get(0),
        )
        .ok();
    println!("{}", n.unwrap_or(0));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("doc-size") {
        return doc_size(args.get(1).expect("doc-size DB"));
    }
    let secs: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    println!("batch={batch}");
    println!("secs_per_scenario={secs}");
    // Warm-up (allocator, page faults, CPU frequency).
    let _ = run(1, 0.3, batch, |_| {
        std::hint::black_box(Target::new("w", "w"));
    });
    let policy = policy_pairs("uncontended", 1, 1, secs, batch, false);
    // The document the store writer would save now: every admission of the
    // last window is in it.
    let t0 = Instant::now();
    let doc = policy.persisted_json();
    let ser = t0.elapsed();
    println!("persisted_json_bytes={}", doc.len());
    println!("persisted_json_ms={:.3}", ser.as_secs_f64() * 1000.0);
    drop(policy);
    floor_pairs("floor.uncontended", 1, 1, secs, batch);
    policy_pairs("uncontended_cb", 1, 1, secs, batch, true);
    policy_pairs("8t8", 8, 8, secs, batch, false);
    floor_pairs("floor.8t8", 8, 8, secs, batch);
    // Contended on one target, each pair is a thread hand-off: smaller
    // batches keep the per-batch samples numerous.
    policy_pairs("8t1", 8, 1, secs, (batch / 10).max(1), false);
    fair_floor("floor.8t1", 8, secs, (batch / 10).max(1));
}
