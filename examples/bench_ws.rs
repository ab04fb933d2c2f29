//! WebSocket side of `scripts/bench_bridge`: final-message ingest over the
//! bridge against raw rusqlite inserts of the same rows, and idle plugin
//! connections for the RSS-per-connection figure.
//!
//! Usage:
//!   bench_ws ingest WS_URL CONNS N RUN [WINDOW]
//!       CONNS connections (client ids `RUN-cCC`), each says hello, waits for
//!       hello_ack, then pipelines its share of N `browser.final_message`
//!       frames (each its own message_id, at most WINDOW unanswered, default
//!       256) and counts the acks (each sent by the daemon after the commit).
//!       The clock runs from the first frame sent to the last ack received
//!       over all connections. Prints key=value: ok, errors, secs, rate,
//!       counts (per connection), first_error.
//!   bench_ws raw TEMPLATE DB CONNS N RUN BATCH MODE
//!       Baseline. Copies TEMPLATE (an empty database whose schema the daemon
//!       created) to DB with `VACUUM INTO`, opens it like the daemon's writer
//!       (WAL, synchronous=NORMAL) and writes the same N rows as `ingest`
//!       (same ids, texts, conversations, tabs, client ids), BATCH rows per
//!       transaction. MODE `messages`: the messages rows only; MODE
//!       `effects`: also what the daemon does for each message — create the
//!       local conversation and its active link the first time, then update
//!       the conversation (last message, summary, title, repeat counter and
//!       fingerprint) and the link (observed_at) — with plain prepared
//!       statements and the ids kept in memory. Every row carries its `seq`
//!       (the fallback trigger of sql/004 is not left to set it). Only the
//!       writes are timed.
//!       Prints rows, secs, rate.
//!   bench_ws count DB RUN
//!       Messages of that run in DB (to check acks against commits).
//!   bench_ws idle WS_URL N SECS
//!       Opens N connections one after the other, each says hello and waits
//!       for its hello_ack and state_snapshot, prints `ready N` on stdout, then
//!       holds them (reading nothing) until SECS pass or stdin is closed.
//!
//! Row `i` of connection `c`: message id `RUN-cCC-IIIIIIII`, platform
//! chatgpt, conversation `RUN-conv-CC-K` (8 per connection), role
//! assistant, a ~300-character text, page URL and title, tab id c+1,
//! observed_at fixed per row. The summary is computed like the daemon does
//! (whitespace collapsed, at most 200 characters).

use std::io::Read;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

#[path = "support/effects.rs"]
mod effects;

const SUMMARY_LIMIT: usize = 200;
const CONVERSATIONS_PER_CONN: u64 = 8;

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_ws: {msg}");
    std::process::exit(1)
}

struct Row {
    message_id: String,
    conversation_id: String,
    text: String,
    page_url: String,
    page_title: String,
    tab_id: i64,
    observed_at: i64,
    client_id: String,
}

fn row(run: &str, c: usize, i: u64) -> Row {
    let conversation_id = format!("{run}-conv-{c:02}-{}", i % CONVERSATIONS_PER_CONN);
    let text = format!(
        "Answer {i} from bench connection {c}. The renewal daemon stores this final assistant message, finds or \
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
        observed_at: 1_700_000_000_000 + (c as i64) * 1_000_000_000 + i as i64,
        client_id: client_id(run, c),
    }
}

fn client_id(run: &str, c: usize) -> String {
    format!("{run}-c{c:02}")
}

/// How many of the N rows connection `c` of `conns` sends.
fn share(n: u64, conns: usize, c: usize) -> u64 {
    n / conns as u64 + u64::from((c as u64) < n % conns as u64)
}

fn frame(r: &Row, seq: u64) -> String {
    json!({
        "type": "browser.final_message", "id": format!("f{seq}"),
        "platform": "chatgpt", "conversation_id": r.conversation_id, "message_id": r.message_id,
        "role": "assistant", "text": r.text, "observed_at": r.observed_at, "page_url": r.page_url,
        "page_title": r.page_title, "tab_id": r.tab_id,
        "route": {"path": format!("/c/{}", r.conversation_id), "pattern": "/c/:conversationId",
                  "params": {"conversationId": r.conversation_id}},
        "organization_id": null, "shell_page": false,
    })
    .to_string()
}

// ---------------------------------------------------------------- client

fn connect(url: &str, client_id: &str) -> WebSocket<TcpStream> {
    let hostport = url
        .strip_prefix("ws://")
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| die(format!("bad ws url {url}")));
    let tcp = TcpStream::connect(hostport).unwrap_or_else(|e| die(format!("connect {hostport}: {e}")));
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let (mut ws, _) =
        tungstenite::client::client(url, tcp).unwrap_or_else(|e| die(format!("handshake: {e}")));
    let hello = json!({"type":"hello","client_id":client_id,"browser":"bench","version":"0",
                       "platforms":["chatgpt"],"protocol_version":1});
    ws.send(Message::text(hello.to_string())).unwrap_or_else(|e| die(e));
    // hello_ack, then state_snapshot.
    let mut seen_ack = false;
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("hello_ack") => seen_ack = true,
                    Some("state_snapshot") if seen_ack => return ws,
                    Some("error") => die(format!("hello refused: {t}")),
                    _ => {}
                }
            }
            Ok(Message::Close(c)) => die(format!("closed during hello: {c:?}")),
            Ok(_) => {}
            Err(e) => die(format!("reading hello_ack: {e}")),
        }
    }
}

struct ConnResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_ack: Option<Instant>,
}

fn ingest(url: &str, conns: usize, n: u64, run: &str, window: u64) {
    let sockets: Vec<WebSocket<TcpStream>> = (0..conns).map(|c| connect(url, &client_id(run, c))).collect();
    // Frames are built before the clock starts: the client's JSON is not
    // what is being measured.
    let frames: Vec<Vec<String>> =
        (0..conns).map(|c| (0..share(n, conns, c)).map(|i| frame(&row(run, c, i), i)).collect()).collect();
    let barrier = Arc::new(Barrier::new(conns + 1));
    let handles: Vec<_> = sockets
        .into_iter()
        .zip(frames)
        .map(|(mut ws, frames)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let total = frames.len() as u64;
                let mut frames = frames.into_iter();
                let (mut sent, mut answered) = (0u64, 0u64);
                let mut r = ConnResult { ok: 0, errors: 0, first_error: None, last_ack: None };
                while answered < total {
                    let mut wrote = false;
                    while sent < total && sent - answered < window {
                        let f = frames.next().expect("frame");
                        if let Err(e) = ws.write(Message::text(f)) {
                            die(format!("write: {e}"));
                        }
                        sent += 1;
                        wrote = true;
                    }
                    if wrote {
                        ws.flush().unwrap_or_else(|e| die(format!("flush: {e}")));
                    }
                    match ws.read() {
                        Ok(Message::Text(t)) => {
                            let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                            match v["type"].as_str() {
                                Some("ack") => {
                                    answered += 1;
                                    if v["duplicate"] == false {
                                        r.ok += 1;
                                    } else {
                                        r.errors += 1;
                                        r.first_error.get_or_insert_with(|| format!("duplicate: {t}"));
                                    }
                                    r.last_ack = Some(Instant::now());
                                }
                                Some("error") => {
                                    answered += 1;
                                    r.errors += 1;
                                    r.first_error.get_or_insert_with(|| t.to_string());
                                }
                                _ => {}
                            }
                        }
                        Ok(Message::Close(c)) => die(format!("closed by the daemon: {c:?}")),
                        Ok(_) => {}
                        Err(e) => die(format!("read: {e} (sent {sent}, answered {answered})")),
                    }
                }
                let _ = ws.close(None);
                r
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let results: Vec<ConnResult> =
        handles.into_iter().map(|h| h.join().expect("connection thread")).collect();
    let end = results.iter().filter_map(|r| r.last_ack).max().unwrap_or(start);
    let secs = (end - start).as_secs_f64();
    let ok: u64 = results.iter().map(|r| r.ok).sum();
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    println!("ok={ok}");
    println!("errors={errors}");
    println!("secs={secs:.3}");
    println!("rate={:.0}", ok as f64 / secs.max(1e-9));
    println!("counts={}", results.iter().map(|r| r.ok.to_string()).collect::<Vec<_>>().join(","));
    println!(
        "first_error={}",
        results.iter().find_map(|r| r.first_error.clone()).unwrap_or_else(|| "-".into())
    );
}

fn idle(url: &str, n: usize, secs: u64) {
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        held.push(connect(url, &format!("idle-{i:05}")));
    }
    println!("ready {n} in {:.2}s", t0.elapsed().as_secs_f64());
    // Hold until stdin closes or the time is up.
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(k) = stdin.read(&mut buf) {
            if k == 0 {
                break;
            }
        }
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(secs));
    drop(held);
}

// ---------------------------------------------------------------- baseline

fn collapse_cut(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= SUMMARY_LIMIT {
        return collapsed;
    }
    let mut s: String = collapsed.chars().take(SUMMARY_LIMIT - 1).collect();
    s.push('…');
    s
}

fn raw(template: &str, db: &str, conns: usize, n: u64, run: &str, batch: usize, mode: &str) {
    if std::path::Path::new(db).exists() {
        die(format!("{db} exists"));
    }
    let with_effects = match mode {
        "messages" => false,
        "effects" => true,
        _ => die("MODE must be messages or effects"),
    };
    {
        let t = Connection::open_with_flags(template, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| die(e));
        t.execute("VACUUM INTO ?1", params![db]).unwrap_or_else(|e| die(e));
    }
    let mut conn = Connection::open(db).unwrap_or_else(|e| die(e));
    conn.pragma_update(None, "journal_mode", "WAL").unwrap_or_else(|e| die(e));
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap_or_else(|e| die(e));
    conn.pragma_update(None, "foreign_keys", "ON").unwrap_or_else(|e| die(e));
    // Same interleaving of connections as the live run would roughly give.
    let mut rows = Vec::with_capacity(n as usize);
    let max_share = share(n, conns, 0);
    for i in 0..max_share {
        for c in 0..conns {
            if i < share(n, conns, c) {
                rows.push(row(run, c, i));
            }
        }
    }
    let start = Instant::now();
    let now = 1_700_000_000_000i64;
    let mut effects_state = effects::Effects::default();
    // Each row's ingest sequence number, as the daemon gives it (1, 2, …
    // on an empty database), rather than the schema's fallback trigger,
    // which would cost an extra UPDATE per row.
    let mut seq: i64 = 0;
    for chunk in rows.chunks(batch) {
        let tx = conn.transaction().unwrap_or_else(|e| die(e));
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO messages (id, platform, conversation_id, role, raw_text, summary, page_url,
                        page_title, tab_id, client_id, organization_id, observed_at, created_at, seq)
                     VALUES (?1, 'chatgpt', ?2, 'assistant', ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11)",
                )
                .unwrap_or_else(|e| die(e));
            for r in chunk {
                let summary = collapse_cut(&r.text);
                seq += 1;
                ins.execute(params![
                    r.message_id,
                    r.conversation_id,
                    r.text,
                    summary,
                    r.page_url,
                    r.page_title,
                    r.tab_id,
                    r.client_id,
                    r.observed_at,
                    now,
                    seq
                ])
                .unwrap_or_else(|e| die(e));
                if !with_effects {
                    continue;
                }
                let m = effects::Message {
                    message_id: &r.message_id,
                    conversation_id: &r.conversation_id,
                    client_id: Some(&r.client_id),
                    text: &r.text,
                    summary: &summary,
                    page_url: &r.page_url,
                    page_title: &r.page_title,
                    tab_id: r.tab_id,
                    observed_at: r.observed_at,
                };
                effects_state.apply(&tx, &m, now).unwrap_or_else(|e| die(e));
            }
        }
        // The search index, as the daemon's writer does before each commit.
        baa_conductor::store::index_queued(&tx).unwrap_or_else(|e| die(e));
        tx.commit().unwrap_or_else(|e| die(e));
    }
    let secs = start.elapsed().as_secs_f64();
    println!("rows={}", rows.len());
    println!("secs={secs:.3}");
    println!("rate={:.0}", rows.len() as f64 / secs);
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| die("missing arguments (see the header of examples/bench_ws.rs)"))
    };
    let num = |i: usize| -> u64 { arg(i).parse().unwrap_or_else(|_| die(format!("bad number {}", arg(i)))) };
    match arg(0).as_str() {
        "ingest" => {
            let window = if args.len() > 5 { num(5) } else { 256 };
            ingest(&arg(1), num(2) as usize, num(3), &arg(4), window)
        }
        "raw" => raw(&arg(1), &arg(2), num(3) as usize, num(4), &arg(5), num(6) as usize, &arg(7)),
        "count" => count(&arg(1), &arg(2)),
        "idle" => idle(&arg(1), num(2) as usize, num(3)),
        other => die(format!("unknown mode {other}")),
    }
}
