//! The `baa-conductor` binary: parse the command line, then either print
//! (help, version, check-config) or run the daemon. Exit codes: 0 clean stop,
//! 2 bad configuration or command line, 1 any other fatal error.

use std::process::ExitCode;

use baa_conductor::config::{self, Command};
use baa_conductor::daemon;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let env = |key: &str| std::env::var(key).ok();
    match config::parse_command(&args, &env) {
        Ok(Command::Help) => {
            print!("{}", config::help_text());
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            // The schema version says which databases this build can open
            // (docs/OPERATIONS.md, "Upgrades").
            println!(
                "baa-conductor {} (database schema {})",
                env!("CARGO_PKG_VERSION"),
                baa_conductor::store::SCHEMA_VERSION
            );
            ExitCode::SUCCESS
        }
        Ok(Command::Backup(config, path)) => match baa_conductor::ops::backup(&config, &path) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("baa-conductor: {err}");
                ExitCode::from(1)
            }
        },
        Ok(Command::Service(request)) => match baa_conductor::ops::service::run(&request, &env) {
            Ok(code) => ExitCode::from(code),
            Err(err) => {
                eprintln!("baa-conductor: service {}: {err}", request.action.as_str());
                ExitCode::from(1)
            }
        },
        Ok(Command::CheckConfig(config)) => {
            println!("{}", serde_json::to_string_pretty(&config).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(Command::Serve(config)) => serve(config),
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
    }
}

/// Runs the daemon until it stops.
fn serve(config: config::Config) -> ExitCode {
    // Returns only when it did not re-execute (src/alloc.rs).
    let reexec = baa_conductor::alloc::exec_without_tcache();
    baa_conductor::logging::init();
    if let Err(err) = reexec {
        log::warn!("cannot restart with glibc's tcache off ({err}); memory may grow under load");
    }
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line on stderr (the journal under a service
            // manager), not a log line and a copy of it.
            eprintln!("baa-conductor: {err}");
            ExitCode::from(1)
        }
    }
}
