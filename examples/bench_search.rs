//! The search benchmark of `scripts/bench`: two-word queries over the
//! corpus `bench_fill search` wrote, run one after another and timed one by
//! one, either through the daemon (`GET /v1/messages?q=…&limit=20` on one
//! keep-alive connection: HTTP, the read pool, JSON) or straight against
//! the database file with rusqlite, running exactly the daemon's statement
//! (`store::search_statement`) — the baseline of the same run.
//!
//! Usage:
//!   bench_search http URL N LO HI [PID]   N queries, words of ranks LO..HI
//!   bench_search raw DB N LO HI
//!
//! Prints one line: `queries=N p50_ms=… p90_ms=… p99_ms=… max_ms=… hits=…
//! cpu_ms=…` (`hits`: mean results per query, at most 20; `cpu_ms`: mean CPU
//! time per query — the daemon's whole process, given its PID, or this
//! thread's for `raw`; raw also gives `cpu_p99_ms`, the p99 of each query's
//! CPU time). CPU time is what the machine's other load does not inflate,
//! so it compares the two modes even on a busy machine, where wall-clock
//! percentiles mostly measure the wait for a core. The queries are the
//! same for both modes (fixed seed per band).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use baa_conductor::store::{fts_query, search_statement, MessageFilter, Page};
use rusqlite::{params_from_iter, Connection, OpenFlags};

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/http1.rs"]
mod http1;
#[path = "support/rng.rs"]
mod rng;

const LIMIT: u32 = 20;

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    baa_conductor::util::thread_cpu_time()
}

/// User plus system CPU time of process `pid` (from /proc, in clock ticks
/// of 10 ms).
fn process_cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_else(|e| die(e));
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Runs one query: its duration and its number of results.
type Runner = Box<dyn FnMut(&str) -> (Duration, usize)>;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_search: {msg}");
    std::process::exit(1)
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Times one query; returns its duration and the number of results.
fn over_http(client: &mut http1::Client, q: &str) -> (Duration, usize) {
    let started = Instant::now();
    let (status, body) = client
        .call("GET", &format!("/v1/messages?q={}&limit={LIMIT}", encode(q)), None)
        .unwrap_or_else(|e| die(format!("GET failed: {e}")));
    let took = started.elapsed();
    if status != 200 {
        die(format!("status {status}: {}", String::from_utf8_lossy(&body)));
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| die(e));
    (took, v["data"]["count"].as_u64().unwrap_or(0) as usize)
}

fn raw(conn: &Connection, q: &str, cpu: &mut Vec<f64>) -> (Duration, usize) {
    let started = Instant::now();
    let cpu_started = thread_cpu();
    let query = fts_query(q).unwrap_or_else(|| die("empty query"));
    let (sql, values) = search_statement(&query, &MessageFilter::default(), Page { limit: LIMIT, offset: 0 });
    let mut stmt = conn.prepare_cached(&sql).unwrap_or_else(|e| die(e));
    let mut rows = stmt.query(params_from_iter(values.iter())).unwrap_or_else(|e| die(e));
    let mut n = 0;
    while let Some(row) = rows.next().unwrap_or_else(|e| die(e)) {
        // Read every column, as the daemon's mapper does.
        for i in 0..15 {
            let _: rusqlite::types::Value = row.get(i).unwrap_or_else(|e| die(e));
        }
        n += 1;
    }
    cpu.push((thread_cpu() - cpu_started).as_secs_f64() * 1000.0);
    (started.elapsed(), n.min(LIMIT as usize))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Prints the result line (see the header).
fn report(times: &mut [f64], mut cpu: Vec<f64>, daemon: Option<(&str, Duration)>, hits: usize) {
    let n = times.len();
    times.sort_by(|a, b| a.total_cmp(b));
    cpu.sort_by(|a, b| a.total_cmp(b));
    let cpu_figures = match daemon {
        Some((pid, before)) => {
            format!(" cpu_ms={:.3}", (process_cpu(pid) - before).as_secs_f64() * 1000.0 / n as f64)
        }
        _ if !cpu.is_empty() => format!(
            " cpu_ms={:.3} cpu_p99_ms={:.3}",
            cpu.iter().sum::<f64>() / cpu.len() as f64,
            percentile(&cpu, 0.99)
        ),
        _ => String::new(),
    };
    println!(
        "queries={n} p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3} hits={:.1}{cpu_figures}",
        percentile(times, 0.5),
        percentile(times, 0.9),
        percentile(times, 0.99),
        times[times.len() - 1],
        hits as f64 / n as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &str| s.parse::<usize>().unwrap_or_else(|_| die(format!("not a number: {s:?}")));
    let (mode, target, n, lo, hi, pid) = match &args[..] {
        [mode, target, n, lo, hi] => (mode.as_str(), target.as_str(), num(n), num(lo), num(hi), None),
        [mode, target, n, lo, hi, pid] if mode == "http" => {
            (mode.as_str(), target.as_str(), num(n), num(lo), num(hi), Some(pid.as_str()))
        }
        _ => die("usage: bench_search http URL N LO HI [PID] | bench_search raw DB N LO HI"),
    };
    let cpu = std::rc::Rc::new(std::cell::RefCell::new(Vec::with_capacity(n + 50)));
    let queries = corpus::queries(&mut corpus::Rng(0x7175_6572 ^ (lo as u64) << 20 ^ hi as u64), n, lo, hi);
    let mut run: Runner = match mode {
        "http" => {
            let addr: SocketAddr = target
                .trim_start_matches("http://")
                .parse()
                .unwrap_or_else(|e| die(format!("{target}: {e}")));
            let mut client = http1::Client::new(addr, Duration::from_secs(30));
            Box::new(move |q| over_http(&mut client, q))
        }
        "raw" => {
            let conn = Connection::open_with_flags(target, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap_or_else(|e| die(e));
            let cpu = cpu.clone();
            Box::new(move |q| raw(&conn, q, &mut cpu.borrow_mut()))
        }
        _ => die("mode must be http or raw"),
    };
    // One pass to warm the page cache and the statement cache, not timed.
    for q in queries.iter().take(50) {
        run(q);
    }
    cpu.borrow_mut().clear();
    let daemon_cpu = pid.map(process_cpu);
    let mut times = Vec::with_capacity(n);
    let mut hits = 0;
    for q in &queries {
        let (took, found) = run(q);
        times.push(took.as_secs_f64() * 1000.0);
        hits += found;
    }
    report(&mut times, cpu.borrow().clone(), pid.zip(daemon_cpu), hits);
}
