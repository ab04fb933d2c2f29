//! Benchmark (b) of `scripts/bench`: message ingest through the API against
//! raw rusqlite inserts of the same rows.
//!
//! Usage:
//!   bench_ingest post BASE_URL CLIENTS SECS RUN [RATE]
//!       CLIENTS threads, each with one keep-alive TcpStream, post
//!       `POST /v1/messages` bodies back to back for SECS seconds (a request
//!       in flight at the deadline is finished); with RATE, at RATE posts
//!       per second in all instead (each client sends its i-th at start +
//!       i·CLIENTS/RATE), the steady writes of `scripts/bench` (a)'s list
//!       benchmark. Prints one JSON line:
//!       {"ok","errors","secs","rate","p50_ms","p99_ms","max_ms","counts":[per client],"first_error"}
//!       where `ok` counts 200 answers and `rate` = ok / secs.
//!   bench_ingest raw TEMPLATE DB COUNTS BATCH RUN MODE
//!       Creates DB (must not exist) as a copy (`VACUUM INTO`) of TEMPLATE, an
//!       empty database whose schema the daemon itself created, so the tables,
//!       indexes and migrations are exactly the daemon's; opens it with WAL
//!       and synchronous=NORMAL like the daemon's writer connection; then
//!       inserts exactly the message rows the `post` run sent (COUNTS is its
//!       per-client `counts`, comma-separated), BATCH rows per transaction,
//!       each with its ingest sequence number `seq` as the daemon gives it
//!       (an earlier version left `seq` to the schema's fallback trigger,
//!       an extra UPDATE per row that made the baseline ~25% slower).
//!       MODE `messages`: the message rows only; MODE `effects`: also what
//!       the daemon writes for each message besides its row — the local
//!       conversation and its active link created the first time, then the
//!       conversation and link updates (`support/effects.rs`, the same
//!       statements as `bench_ws raw … effects`).
//!       Prints rows, secs, rate (`key=value` lines); only the writes are timed.
//!   bench_ingest count DB RUN
//!       Prints how many messages of that post run are in DB.
//!
//! Row `i` of client `c` is the same in `post` and `raw`: message id
//! `RUN-cCC-IIIIIIII`, platform chatgpt, one of 8 conversations per client,
//! role assistant, a ~300-character text, page URL and title, tab id c+1, and
//! observed_at = T0 + 16·i + c: increasing in the order the rows are sent,
//! as a plugin's clock stamps them (an earlier version gave each client its
//! own far-apart range, which no real plugin does). `raw` computes the summary the way the daemon does
//! (whitespace collapsed, at most 200 characters, `…` when cut).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};

#[path = "support/effects.rs"]
mod effects;

const SUMMARY_LIMIT: usize = 200;

struct Row {
    message_id: String,
    conversation_id: String,
    text: String,
    page_url: String,
    page_title: String,
    tab_id: i64,
    observed_at: i64,
}

fn row(run: &str, c: usize, i: u64) -> Row {
    let conversation_id = format!("bench-conv-{c:02}-{}", i % 8);
    let text = format!(
        "Answer {i} from bench client {c}. The renewal daemon stores this final assistant message, finds or \
         creates its local conversation, counts repeats and makes the link from conversation to tab active, all \
         in one transaction committed by the single store writer. Padding to a realistic size: lorem ipsum {i:08}."
    );
    Row {
        message_id: format!("{run}-c{c:02}-{i:08}"),
        page_url: format!("https://chatgpt.com/c/{conversation_id}"),
        page_title: format!("Bench conversation {c}"),
        conversation_id,
        text,
        tab_id: c as i64 + 1,
        observed_at: 1_700_000_000_000 + (i as i64) * 16 + c as i64,
    }
}

/// The request body of a row, serialised into `out` (cleared first) from a
/// plain struct: the load generator shares the CPUs with the daemon, so it
/// builds no `json!` tree and reuses its buffers.
fn body(r: &Row, out: &mut Vec<u8>) {
    #[derive(serde::Serialize)]
    struct Body<'a> {
        platform: &'a str,
        conversation_id: &'a str,
        message_id: &'a str,
        role: &'a str,
        text: &'a str,
        observed_at: i64,
        page_url: &'a str,
        page_title: &'a str,
        tab_id: i64,
    }
    out.clear();
    let b = Body {
        platform: "chatgpt",
        conversation_id: &r.conversation_id,
        message_id: &r.message_id,
        role: "assistant",
        text: &r.text,
        observed_at: r.observed_at,
        page_url: &r.page_url,
        page_title: &r.page_title,
        tab_id: r.tab_id,
    };
    serde_json::to_writer(&mut *out, &b).unwrap_or_else(|e| die(e));
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_ingest: {msg}");
    std::process::exit(1)
}

/// Reads one HTTP/1.1 response with a Content-Length body into `body`;
/// returns (status, close requested). `line` is a reused buffer.
fn read_response(
    reader: &mut BufReader<TcpStream>,
    line: &mut String,
    body: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    line.clear();
    if reader.read_line(line)? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut length = None;
    let mut close = false;
    loop {
        line.clear();
        if reader.read_line(line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed in headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((name, value)) = l.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
                close = true;
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("response without Content-Length"))?;
    body.resize(length, 0);
    reader.read_exact(body)?;
    Ok((status, close))
}

fn host_port(base: &str) -> String {
    base.trim_start_matches("http://").trim_end_matches('/').to_string()
}

struct ClientResult {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    first_error: Option<String>,
}

/// When a client sends: its `i`-th request no earlier than `start + i·interval`.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    deadline: Instant,
    interval: Option<Duration>,
}

fn client(addr: &str, run: &str, c: usize, at: Schedule) -> ClientResult {
    let deadline = at.deadline;
    let mut res = ClientResult { ok: 0, errors: 0, latencies_us: Vec::new(), first_error: None };
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut i = 0u64;
    let (mut payload, mut request, mut line, mut answer) =
        (Vec::new(), Vec::new(), String::new(), Vec::new());
    while Instant::now() < deadline {
        if conn.is_none() {
            let stream = TcpStream::connect(addr).unwrap_or_else(|e| die(format!("connect {addr}: {e}")));
            stream.set_nodelay(true).ok();
            stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let reader = BufReader::new(stream.try_clone().unwrap_or_else(|e| die(e)));
            conn = Some((stream, reader));
        }
        if let Some(interval) = at.interval {
            let due = at.start + interval * i as u32;
            if due >= deadline {
                break;
            }
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let (stream, reader) = conn.as_mut().expect("connected above");
        body(&row(run, c, i), &mut payload);
        request.clear();
        write!(request, "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", payload.len())
            .expect("write to a Vec");
        request.extend_from_slice(&payload);
        let t0 = Instant::now();
        let outcome = stream.write_all(&request).and_then(|()| read_response(reader, &mut line, &mut answer));
        let elapsed = t0.elapsed();
        i += 1;
        match outcome {
            Ok((200, close)) => {
                res.ok += 1;
                res.latencies_us.push(elapsed.as_micros() as u64);
                if close {
                    conn = None;
                }
            }
            Ok((status, _)) => {
                res.errors += 1;
                res.first_error
                    .get_or_insert_with(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&answer)));
                conn = None;
            }
            Err(e) => {
                res.errors += 1;
                res.first_error.get_or_insert_with(|| format!("I/O: {e}"));
                conn = None;
            }
        }
    }
    res
}

fn post(base: &str, clients: usize, secs: f64, run: &str, rate: Option<f64>) {
    let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
    let addr = host_port(base);
    let barrier = Arc::new(Barrier::new(clients + 1));
    let start_at = Arc::new(std::sync::OnceLock::<Instant>::new());
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, run, barrier, start_at) =
                (addr.clone(), run.to_string(), barrier.clone(), start_at.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = *start_at.get().expect("start time set before the barrier");
                let at = Schedule { start, deadline: start + Duration::from_secs_f64(secs), interval };
                client(&addr, &run, c, at)
            })
        })
        .collect();
    start_at.set(Instant::now()).ok();
    barrier.wait();
    let results: Vec<ClientResult> = handles.into_iter().map(|h| h.join().expect("client thread")).collect();
    let elapsed = start_at.get().expect("set").elapsed().as_secs_f64();
    let ok: u64 = results.iter().map(|r| r.ok).sum();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let mut lat: Vec<u64> = results.iter().flat_map(|r| r.latencies_us.iter().copied()).collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
        }
    };
    // Rows 0..ok of each client were committed when errors == 0 (the bench
    // checks that); the raw baseline inserts exactly those rows.
    let counts: Vec<u64> = results.iter().map(|r| r.ok).collect();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
    println!("ok={ok}\nerrors={errors}\nsecs={elapsed:.3}\nrate={:.1}", ok as f64 / elapsed);
    println!("p50_ms={:.3}\np99_ms={:.3}\nmax_ms={:.3}", pct(0.50), pct(0.99), pct(1.0));
    println!("counts={}", counts.join(","));
    // One line, for the report: the first non-200 answer or I/O error.
    println!("first_error={}", first_error.unwrap_or_default().replace('\n', " "));
}

fn summary(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= SUMMARY_LIMIT {
        return collapsed;
    }
    let mut out: String = collapsed.chars().take(SUMMARY_LIMIT - 1).collect();
    out.push('…');
    out
}

fn raw(template: &str, db: &str, counts: &[u64], batch: usize, run: &str, mode: &str) {
    let with_effects = match mode {
        "messages" => false,
        "effects" => true,
        _ => die("MODE must be messages or effects"),
    };
    if std::path::Path::new(db).exists() {
        die(format!("{db} exists; raw wants a fresh file"));
    }
    {
        let t = Connection::open_with_flags(template, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| die(e));
        let messages: i64 =
            t.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0)).unwrap_or_else(|e| die(e));
        if messages != 0 {
            die(format!("template {template} is not empty ({messages} messages)"));
        }
        t.execute("VACUUM INTO ?1", params![db]).unwrap_or_else(|e| die(e));
    }
    let mut conn = Connection::open(db).unwrap_or_else(|e| die(e));
    // The daemon's writer settings (src/store/schema.rs open_writer).
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        .unwrap_or_else(|e| die(e));
    // Rows in arrival order: round-robin over clients, like the post run.
    let max = counts.iter().copied().max().unwrap_or(0);
    let rows: Vec<Row> = (0..max)
        .flat_map(|i| counts.iter().enumerate().filter(move |(_, &n)| i < n).map(move |(c, _)| (c, i)))
        .map(|(c, i)| row(run, c, i))
        .collect();
    // The same sequence numbers the daemon gives (1, 2, … on an empty
    // database), counted here rather than left to the schema's fallback
    // trigger, which would cost an extra UPDATE per row.
    let mut seq: i64 = 0;
    let mut effects_state = effects::Effects::default();
    let started = Instant::now();
    for chunk in rows.chunks(batch.max(1)) {
        let tx = conn.transaction().unwrap_or_else(|e| die(e));
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, page_url,
                        page_title, tab_id, client_id, organization_id, observed_at, created_at, seq)
                     VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)",
                )
                .unwrap_or_else(|e| die(e));
            for r in chunk {
                seq += 1;
                let summary = summary(&r.text);
                stmt.execute(params![
                    r.message_id,
                    "chatgpt",
                    r.conversation_id,
                    "assistant",
                    r.text,
                    summary,
                    r.page_url,
                    r.page_title,
                    r.tab_id,
                    Option::<String>::None,
                    Option::<String>::None,
                    r.observed_at,
                    now_ms(),
                    seq
                ])
                .unwrap_or_else(|e| die(e));
                if with_effects {
                    // The post run's bodies carry no client id.
                    let m = effects::Message {
                        message_id: &r.message_id,
                        conversation_id: &r.conversation_id,
                        client_id: None,
                        text: &r.text,
                        summary: &summary,
                        page_url: &r.page_url,
                        page_title: &r.page_title,
                        tab_id: r.tab_id,
                        observed_at: r.observed_at,
                    };
                    effects_state.apply(&tx, &m, now_ms()).unwrap_or_else(|e| die(e));
                }
            }
        }
        // The search index, as the daemon's writer does before each commit.
        baa_conductor::store::index_queued(&tx).unwrap_or_else(|e| die(e));
        tx.commit().unwrap_or_else(|e| die(e));
    }
    let secs = started.elapsed().as_secs_f64();
    println!("rows={}\nsecs={secs:.3}\nrate={:.1}", rows.len(), rows.len() as f64 / secs);
}

fn count(db: &str, run: &str) {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap_or_else(|e| die(e));
    let n: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE id >= ?1 AND id < ?2",
            params![format!("{run}-"), format!("{run}.")],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| die(e));
    println!("{n}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |s: &str| s.parse::<u64>().unwrap_or_else(|_| die(format!("not a number: {s:?}")));
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["post", base, clients, secs, run, ref rate @ ..] if rate.len() <= 1 => {
            let secs: f64 = secs.parse().unwrap_or_else(|_| die("SECS must be a number"));
            let rate = rate.first().map(|r| r.parse::<f64>().ok().filter(|r| *r > 0.0).unwrap_or_else(|| die("RATE must be a positive number")));
            post(base, num(clients) as usize, secs, run, rate)
        }
        ["raw", template, db, counts, batch, run, mode] => {
            let counts: Vec<u64> = counts.split(',').filter(|s| !s.is_empty()).map(num).collect();
            raw(template, db, &counts, num(batch) as usize, run, mode)
        }
        ["count", db, run] => count(db, run),
        _ => die("usage: bench_ingest post BASE_URL CLIENTS SECS RUN [RATE] | raw TEMPLATE DB COUNTS BATCH RUN MODE | count DB RUN"),
    }
}
