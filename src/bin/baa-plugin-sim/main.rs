//! `baa-plugin-sim`: a stand-in for the browser plugin of baa-conductor.
//!
//! It speaks the plugin's side of the bridge protocol
//! (docs: docs/BRIDGE.md) over the daemon's WebSocket, so that a person
//! can watch the daemon work without a browser, and tests and benchmarks can
//! drive it: it says hello, reports tabs and login states, can post one
//! final message, and answers the daemon's `proxy_delivery`, `action` and
//! `api_request` frames in a chosen way (succeed, fail, stay silent, stream,
//! report an upstream HTTP status), optionally after a delay. Its answers
//! come from the library's `bridge::plugin_answers`, the plugin's side of
//! the protocol, which the daemon never runs and the integration tests
//! share; everything else is written from the protocol text alone and
//! shares no code with the daemon, so it checks the daemon rather than
//! mirroring it. `--help` lists the options.

mod cli;
mod connect;
mod feed;
mod frames;
mod output;
mod session;
mod signal;

use cli::Parsed;
use output::Output;
use session::{End, Session};
use std::process::exit;

fn main() {
    // tungstenite logs through `log`; RUST_LOG=debug shows its side.
    env_logger::init();
    let opts = match cli::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(mut opts)) => {
            // The daemon's own variable, so one `export BAA_TOKEN=…` serves both.
            if opts.token.is_none() {
                opts.token = std::env::var("BAA_TOKEN").ok().filter(|t| !t.is_empty());
            }
            opts
        }
        Ok(Parsed::Help) => return print!("{}", cli::HELP),
        Ok(Parsed::Version) => {
            return println!("baa-plugin-sim {}", env!("CARGO_PKG_VERSION"));
        }
        Err(e) => {
            eprintln!("baa-plugin-sim: {e} (see --help)");
            exit(2);
        }
    };
    signal::install();
    let mut out = Output::new(opts.quiet);
    let ws = match connect::connect(&opts) {
        Ok(ws) => ws,
        // Ctrl-C while connecting interrupts the connect: not a failure.
        Err(_) if signal::stop_requested() => exit(0),
        // Nothing happened yet, so no summary: just why.
        Err(e) => {
            out.error(&e);
            exit(1);
        }
    };
    let end = Session::new(ws, &opts, &mut out).run();
    exit(report(end, &mut out));
}

/// Prints how it ended and the summary; returns the exit status.
fn report(end: End, out: &mut Output) -> i32 {
    let status = match end {
        End::Closed(desc) => {
            out.status(&format!("closed: {desc}"));
            0
        }
        End::Stopped => {
            out.status("stopped");
            0
        }
        End::Acked => 0,
        End::Failed(why) => {
            out.error(&why);
            1
        }
    };
    out.summary();
    status
}
