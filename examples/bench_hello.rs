//! Baseline server of `scripts/bench`: the smallest tiny_http 0.12 program
//! that answers every request with `200 Hello, world!`, measured in the same
//! run as the daemon so the ratio cancels out the machine.
//!
//! Configuration (the fairness of the comparison depends on it, see
//! docs/BENCHMARKS.md): one `tiny_http::Server` on 127.0.0.1:0 with its own
//! accept thread and connection task pool (tiny_http's, unchanged), and
//! `--threads N` worker threads (default 4, the daemon's default
//! `limits.http_threads`) each looping on `server.recv()` and answering at
//! once. Keep-alive is tiny_http's default (on). No logging, no routing, no
//! JSON: this is the ceiling of "an HTTP/1.1 server in Rust on this box".
//!
//! Prints `bench_hello listening on http://127.0.0.1:PORT` on stdout once the
//! socket is bound, then serves until killed.
//!
//! Usage: cargo run --release --example bench_hello -- [--threads N]

use std::io::Write;
use std::sync::Arc;

fn main() {
    let mut threads = 4usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => {
                threads = args.next().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or_else(|| {
                    eprintln!("bench_hello: --threads needs a positive integer");
                    std::process::exit(2)
                })
            }
            other => {
                eprintln!("bench_hello: unknown argument {other:?} (usage: bench_hello [--threads N])");
                std::process::exit(2)
            }
        }
    }
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap_or_else(|e| {
        eprintln!("bench_hello: cannot bind 127.0.0.1:0: {e}");
        std::process::exit(1)
    }));
    let addr = server.server_addr().to_ip().expect("tcp listener has an ip address");
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let server = Arc::clone(&server);
            std::thread::spawn(move || {
                let header: tiny_http::Header =
                    "Content-Type: text/plain".parse().expect("static header parses");
                loop {
                    let Ok(request) = server.recv() else { return };
                    let response =
                        tiny_http::Response::from_string("Hello, world!").with_header(header.clone());
                    let _ = request.respond(response);
                }
            })
        })
        .collect();
    println!("bench_hello listening on http://{addr}");
    let _ = std::io::stdout().flush();
    for worker in workers {
        let _ = worker.join();
    }
}
