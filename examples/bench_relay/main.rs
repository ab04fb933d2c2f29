//! Load generator of `scripts/bench_bridge` and `scripts/bench_policy`:
//! request/answer round trips through the daemon (HTTP → hub → plugin
//! simulator → HTTP answer) and, as the baseline measured in the same run,
//! the same round trip straight over a WebSocket to a simulator.
//!
//! Usage:
//!   bench_relay http BASE_URL PATH BODY CONNS PACE SECS
//!       CONNS threads, each with its own keep-alive connection to BASE_URL,
//!       send `POST PATH` with the JSON BODY (`GET` when BODY is `-`) and
//!       read the answer, which must be a 200.
//!   bench_relay direct SIM_BIN KIND CONNS PACE SECS [SIM_ARGS...]
//!       Listens on 127.0.0.1:0 as a minimal bridge, starts SIM_BIN
//!       (`baa-plugin-sim --url ws://127.0.0.1:PORT/ws/browser SIM_ARGS...`),
//!       answers its hello with hello_ack, then CONNS caller threads send
//!       `KIND` frames (`action` or `api_request`, built like the daemon
//!       builds them) over that one socket and wait for the answer with the
//!       same request_id (one reader thread routes answers to callers). This
//!       is the plugin round trip without HTTP, the hub, the policy or the
//!       daemon's writer thread.
//!
//! PACE:
//!   closed               each thread sends its next request as soon as the
//!                        previous answer is in (closed loop);
//!   rate:R               open loop at R requests/s in total: request i is
//!                        scheduled at start + i/R and taken by the next free
//!                        thread, which sleeps until then;
//!   ladder:R1,R2,...     one open-loop run of SECS per rate, in order; a
//!                        step not sustained is run once more, and two
//!                        steps in a row not sustained end the ladder.
//!
//! A rate is *sustained* when at least 97% of the scheduled requests were
//! answered within the run (+1 s grace), without errors, and the p99 of the
//! latency counted from each request's *scheduled* time (so a server that
//! falls behind is charged for the queue it causes: no coordinated omission)
//! is at most 10 ms.
//!
//! Output: `key=value` lines. Latencies are in ms, measured per request
//! from the moment its bytes are written to the moment the whole answer is
//! read (`p50_ms`, `p99_ms`, ...); `sched_p99_ms` counts from the scheduled
//! time instead; `lag_p99_ms` is how late requests left (client sleep
//! overshoot, or every connection busy). `per_sec` = answers per second of
//! the run. A 0.5 s closed-loop warm-up precedes the first measured run.

use std::time::Duration;

mod direct;
mod http;
mod load;

use direct::direct;
use http::HttpCaller;
use load::{parse_pace, run_paces, Caller};

/// How long a caller waits for one answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("bench_relay: {msg}");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .cloned()
            .unwrap_or_else(|| die("missing arguments (see the header of examples/bench_relay/main.rs)"))
    };
    let num = |i: usize| -> f64 { arg(i).parse().unwrap_or_else(|_| die(format!("bad number {}", arg(i)))) };
    match arg(0).as_str() {
        "http" => {
            let (base, path, body) = (arg(1), arg(2), arg(3));
            let conns = num(4) as usize;
            let paces = parse_pace(&arg(5));
            let secs = num(6);
            let mut callers: Vec<Box<dyn Caller>> = (0..conns)
                .map(|_| Box::new(HttpCaller::new(&base, &path, &body)) as Box<dyn Caller>)
                .collect();
            run_paces(&mut callers, &paces, secs);
        }
        "direct" => {
            let (sim, kind) = (arg(1), arg(2));
            let conns = num(3) as usize;
            let paces = parse_pace(&arg(4));
            let secs = num(5);
            direct(&sim, &kind, conns, &paces, secs, &args[6..]);
        }
        other => die(format!("unknown mode {other}")),
    }
}
