//! `daemon::start` in this process, where its threads can be seen: a start
//! that fails half-way — the plugin port is taken, after the store writer,
//! its checkpointer and the policy sweeper have started — returns its error
//! with every one of those threads joined and the state dir's lock released.
//! (The writer holds the policy, which holds a `Store`: a writer left
//! detached would wait on its own inbox for ever.)
//!
//! A joined thread can still be listed in `/proc/self/task` for a moment:
//! `pthread_join` returns when the kernel clears the thread's id, a little
//! before the task is reaped. So the count is polled with a deadline; a
//! thread left running would keep it above zero past it.

mod support;

use std::net::TcpListener;
use std::time::Duration;

use baa_conductor::config::{parse_command, Command};
use baa_conductor::daemon;

/// Threads of this process whose name starts with `prefix` (Linux keeps the
/// first 15 bytes of a thread's name in `/proc/self/task/*/comm`).
fn threads_named(prefix: &str) -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

fn serve_config(state_dir: &std::path::Path, ws_listen: &str) -> baa_conductor::config::Config {
    let args: Vec<String> = [
        "serve",
        "--state-dir",
        &state_dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--ws-listen",
        ws_listen,
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    match parse_command(&args, &|_| None) {
        Ok(Command::Serve(config)) => config,
        other => panic!("not a serve command: {:?}", other.err()),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_start_that_fails_half_way_leaves_no_thread_behind() {
    let dir = support::TempDir::new("daemon-start");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let ws_listen = taken.local_addr().unwrap().to_string();
    let roles = ["store-writer", "store-checkpoi", "policy-sweeper"];
    for role in roles {
        assert_eq!(threads_named(role), 0, "{role} before the start");
    }

    for attempt in 0..2 {
        let err = match daemon::start(serve_config(dir.path(), &ws_listen)) {
            Ok(_) => panic!("start succeeded on a taken port"),
            Err(err) => err,
        };
        // The second attempt fails at the same place, not on the lock.
        assert!(err.0.contains("ws_listen"), "attempt {attempt}: {err}");
        for role in roles {
            let gone = support::wait_until(Duration::from_secs(5), || threads_named(role) == 0);
            assert!(gone, "attempt {attempt}: {role} was left running ({})", threads_named(role));
        }
    }
}
