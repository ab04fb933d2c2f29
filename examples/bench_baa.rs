//! The programs of `scripts/bench_baa` (docs/BENCHMARKS.md, "Instruction
//! blocks").
//!
//! Usage:
//!   bench_baa parse
//!       In-process: what ingest spends reading a message's instruction
//!       blocks (`baa::blocks_to_record`: the parse, and for each block its
//!       id and params), in µs per KiB of message text, on messages without
//!       blocks (prose with code fences, the usual case: `plain`; the same
//!       prose naming "baa-conductor" once, so the quick test for the
//!       letters `baa` passes and every line is scanned: `scanned`) and
//!       with two blocks, at 1, 16 and 256 KiB; beside it the work ingest already
//!       did per message before (`util::summary` + `util::fingerprint`),
//!       measured the same way in the same run. Best of 5 rounds of at
//!       least 200 ms each. Prints key=value lines.
//!   bench_baa latency WS_URL HTTP_BASE N
//!       Connects as a plugin (client `bench-baa`), creates 16
//!       conversations (tabs 1–16) and switches them to auto over HTTP,
//!       then N times, one
//!       after the other, rotating over the conversations: sends a
//!       `browser.final_message` whose text holds
//!       one `@conductor.status` block, takes the time its `ack` arrives
//!       (the commit), and the time the `[baa]` reply's `proxy_delivery` for
//!       that message arrives; answers it as delivered. Prints the latency
//!       ack → proxy_delivery (p50, p90, p99, max, in ms) and, as a
//!       reference from the same run, the round trip send → ack of the
//!       same frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use baa_conductor::bridge::plugin_answers::{Answerer, Mode};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_baa: {msg}");
    std::process::exit(1)
}

// ----------------------------------------------------------------- parse

/// Assistant prose with a code fence every few paragraphs, `kib` KiB long.
fn prose(kib: usize) -> String {
    let para = "The change keeps the writer as the one serial stage: everything that can be \
                computed from the message alone is computed on the caller's thread, so the \
                writer only runs SQL. Below is the part of the diff that matters.\n\n";
    let code = "```rust\nfn prepare(input: NewMessage) -> PreparedMessage {\n    let summary = summary(&input.text, 200);\n    PreparedMessage { input, summary }\n}\n```\n\n";
    let mut text = String::with_capacity(kib * 1024 + 512);
    let mut i = 0;
    while text.len() < kib * 1024 {
        text.push_str(if i % 4 == 3 { code } else { para });
        i += 1;
    }
    text.truncate(kib * 1024);
    text
}

/// The same prose with two blocks, one near the start and one at the end.
fn with_blocks(kib: usize) -> String {
    let mut text = prose(kib);
    let first = "Let me look.\n\n```baa\n@conductor.files.read {\"path\": \"notes/todo.md\"}\n```\n\n";
    let last = "\n\n```baa\n@conductor.exec\nls -la ~/code && git -C ~/code status --short\n```\n";
    text.truncate(kib * 1024 - first.len() - last.len());
    format!("{first}{text}{last}")
}

/// Best µs per KiB over 5 rounds of `f` on `text`.
fn per_kib(text: &str, f: &dyn Fn(&str)) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        let mut runs = 0u64;
        while start.elapsed() < Duration::from_millis(200) {
            f(std::hint::black_box(text));
            runs += 1;
        }
        let us = start.elapsed().as_secs_f64() * 1e6 / runs as f64;
        best = best.min(us / (text.len() as f64 / 1024.0));
    }
    best
}

fn parse() {
    let blocks = |t: &str| {
        std::hint::black_box(baa_conductor::baa::blocks_to_record("msg_bench", t, 8));
    };
    let before = |t: &str| {
        std::hint::black_box(baa_conductor::util::summary(t, 200));
        std::hint::black_box(baa_conductor::util::fingerprint(t));
    };
    assert!(baa_conductor::baa::blocks_to_record("m", &prose(16), 8).is_empty());
    assert_eq!(baa_conductor::baa::blocks_to_record("m", &with_blocks(16), 8).len(), 2);
    for kib in [1, 16, 256] {
        let (plain, mixed) = (prose(kib), with_blocks(kib));
        // The same prose naming the daemon once: the fence scan must run.
        let named = format!("baa-conductor {plain}");
        assert!(baa_conductor::baa::blocks_to_record("m", &named, 8).is_empty());
        println!("parse_plain_{kib}k_us_per_kib={:.3}", per_kib(&plain, &blocks));
        println!("parse_scanned_{kib}k_us_per_kib={:.3}", per_kib(&named, &blocks));
        println!("parse_blocks_{kib}k_us_per_kib={:.3}", per_kib(&mixed, &blocks));
        println!("ingest_prepare_{kib}k_us_per_kib={:.3}", per_kib(&plain, &before));
    }
}

// --------------------------------------------------------------- latency

fn connect(url: &str) -> WebSocket<TcpStream> {
    let hostport = url.strip_prefix("ws://").and_then(|r| r.split('/').next()).unwrap_or_else(|| die(url));
    let tcp = TcpStream::connect(hostport).unwrap_or_else(|e| die(format!("connect {hostport}: {e}")));
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let (mut ws, _) =
        tungstenite::client::client(url, tcp).unwrap_or_else(|e| die(format!("handshake: {e}")));
    let hello = json!({"type":"hello","client_id":"bench-baa","browser":"bench","version":"0",
                       "platforms":["chatgpt"],"protocol_version":1});
    ws.send(Message::text(hello.to_string())).unwrap_or_else(|e| die(e));
    loop {
        if let Some(v) = next(&mut ws) {
            if v["type"] == "state_snapshot" {
                return ws;
            }
        }
    }
}

fn next(ws: &mut WebSocket<TcpStream>) -> Option<Value> {
    match ws.read() {
        Ok(Message::Text(t)) => serde_json::from_str(t.as_str()).ok(),
        Ok(Message::Close(c)) => die(format!("closed: {c:?}")),
        Ok(_) => None,
        Err(e) => die(format!("read: {e}")),
    }
}

/// Conversations the messages rotate over: a conversation's next message
/// comes long after its last reply's delivery has released it.
const CONVERSATIONS: usize = 16;

fn frame(conv: usize, id: &str, role: &str, text: &str) -> String {
    json!({"type": "browser.final_message", "id": id, "platform": "chatgpt", "conversation_id": format!("bench-{conv}"),
           "message_id": id, "role": role, "text": text, "tab_id": conv + 1,
           "page_url": format!("https://chatgpt.com/c/bench-{conv}"), "page_title": "bench"})
    .to_string()
}

/// Sends a frame and waits for its ack; returns the ack.
fn send_acked(ws: &mut WebSocket<TcpStream>, frame: String, id: &str) -> Value {
    ws.send(Message::text(frame)).unwrap_or_else(|e| die(e));
    loop {
        if let Some(v) = next(ws) {
            if v["type"] == "ack" && v["id"] == id {
                return v;
            }
            if v["type"] == "error" {
                die(format!("refused: {v}"));
            }
        }
    }
}

/// `POST base/path` with an empty JSON body; the answer's status.
fn post(base: &str, path: &str) -> u16 {
    let hostport = base.strip_prefix("http://").unwrap_or_else(|| die(base));
    let mut s = TcpStream::connect(hostport).unwrap_or_else(|e| die(e));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).unwrap_or_else(|e| die(e));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn latency(url: &str, base: &str, n: usize) {
    let mut ws = connect(url);
    for conv in 0..CONVERSATIONS {
        let open = format!("open-{conv}");
        let ack = send_acked(&mut ws, frame(conv, &open, "user", "open"), &open);
        let lc = ack["local_conversation_id"].as_str().unwrap_or_else(|| die("no conversation"));
        let status = post(base, &format!("/v1/renewal/conversations/{lc}/auto"));
        if status != 200 {
            die(format!("switch to auto: {status}"));
        }
    }
    let (mut lat, mut rtt) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let id = format!("bench-{i}");
        // Every text differs: the same text three times in a row would
        // pause the conversation (repeated_message).
        let text = format!("Step {i}: checking the daemon.\n\n```baa\n@conductor.status\n```\n");
        let sent = Instant::now();
        send_acked(&mut ws, frame(i % CONVERSATIONS, &id, "assistant", &text), &id);
        let acked = Instant::now();
        loop {
            let Some(v) = next(&mut ws) else { continue };
            if v["type"] == "proxy_delivery" && v["assistant_message_id"] == id.as_str() {
                let delivered = Instant::now();
                let answerer = Answerer { client_id: None, default_platform: None, mode: &Mode::Succeed };
                for answer in answerer.answer(&v).unwrap_or_else(|e| die(e)) {
                    ws.send(Message::text(answer.to_string())).unwrap_or_else(|e| die(e));
                }
                lat.push((delivered - acked).as_secs_f64() * 1e3);
                rtt.push((acked - sent).as_secs_f64() * 1e3);
                break;
            }
        }
    }
    for v in [&mut lat, &mut rtt] {
        v.sort_by(|a, b| a.total_cmp(b));
    }
    println!("n={n}");
    for (name, v) in [("reply", &lat), ("ack", &rtt)] {
        println!(
            "{name}_p50_ms={:.2} {name}_p90_ms={:.2} {name}_p99_ms={:.2} {name}_max_ms={:.2}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            v[v.len() - 1]
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["parse"] => parse(),
        ["latency", url, base, n] => latency(url, base, n.parse().unwrap_or_else(|_| die("N"))),
        _ => die("usage: bench_baa parse | latency WS_URL HTTP_BASE N"),
    }
}
