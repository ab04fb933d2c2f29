//! `recovery`: start-to-ready of a daemon that finds running jobs, with
//! what its recovery requeued.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{die, http_get};

pub(super) fn recovery(bin: &str, dir: &str, runs: usize) {
    let db = format!("{dir}/conductor.db");
    let saved = format!("{dir}/../recovery-source.db");
    std::fs::copy(&db, &saved).unwrap_or_else(|e| die(format!("cannot copy {db}: {e}")));
    let mut ready_ms = Vec::new();
    for run in 0..runs {
        std::fs::copy(&saved, &db).unwrap_or_else(|e| die(e));
        let _ = std::fs::remove_file(format!("{db}-wal"));
        let _ = std::fs::remove_file(format!("{db}-shm"));
        // Warm page cache for every run alike: read the file once.
        let _ = std::fs::read(&db).map(|b| std::hint::black_box(b.len()));
        let t0 = Instant::now();
        let mut child = Command::new(bin)
            .args(["serve", "--state-dir", dir, "--listen", "127.0.0.1:0", "--ws-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| die(format!("cannot start {bin}: {e}")));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    if let Some(b) = l.strip_prefix("baa-conductor listening on ") {
                        break b.to_string();
                    }
                }
                _ => die("the daemon exited before its ready line"),
            }
        };
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        ready_ms.push(ms);
        let addr = base.trim_start_matches("http://").to_string();
        let timed = http_get(&addr, "/v1/timed-jobs");
        let rec = &timed["data"]["last_recovery"];
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        let status = child.wait().unwrap_or_else(|e| die(e));
        let line = stderr.lines().find(|l| l.contains("recovery:")).unwrap_or("(no recovery line)");
        let line = line.split("] ").nth(1).unwrap_or(line);
        println!("run{run}.ready_ms={ms:.1}");
        println!("run{run}.requeued={}", rec["requeued_renewal_job_count"]);
        println!("run{run}.released={}", rec["recovered_execution_state_count"]);
        println!("run{run}.log={line}");
        println!("run{run}.exit={}", status.code().unwrap_or(-1));
    }
    std::fs::copy(&saved, &db).unwrap_or_else(|e| die(e));
    let _ = std::fs::remove_file(&saved);
    ready_ms.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    println!("median_ready_ms={:.1}", ready_ms[ready_ms.len() / 2]);
    println!("max_ready_ms={:.1}", ready_ms[ready_ms.len() - 1]);
    println!("ready_ms={}", ready_ms.iter().map(|m| format!("{m:.1}")).collect::<Vec<_>>().join(","));
}
