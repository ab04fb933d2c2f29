//! Durability: a restart keeps data and the system state; a kill -9 loses
//! no acknowledged write; a restart after kill -9 just works (the lock is
//! the OS's and dies with the process).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{
    message_body, quiet_timed_jobs, read_json, seed_job, try_request, wait_until, Daemon, DaemonOpts, JobSeed,
};

fn daemon() -> Daemon {
    Daemon::start(DaemonOpts::new().config(quiet_timed_jobs()))
}

/// A list with each item's `artifact_url` removed (it names the port, which
/// changes on restart) — everything else must be identical.
fn without_urls(mut list: Value, key: &str) -> Value {
    for item in list[key].as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("artifact_url");
    }
    list
}

fn snapshot(d: &Daemon) -> Vec<Value> {
    vec![
        without_urls(d.get("/v1/messages?limit=500").data(), "messages"),
        d.get("/v1/renewal/conversations?limit=500").data(),
        d.get("/v1/renewal/links?limit=500").data(),
        d.get("/v1/renewal/jobs?limit=500").data(),
    ]
}

#[test]
fn a_restart_keeps_data_and_system_state() {
    let mut d = daemon();
    let mut lcs = Vec::new();
    for i in 0..5 {
        let mut body =
            message_body("chatgpt", &format!("c{}", i % 3), &format!("m{i}"), &format!("text {i}"));
        body["tab_id"] = json!(i + 1);
        body["client_id"] = json!("ff-1");
        lcs.push(
            d.post_json("/v1/messages", &body).data()["local_conversation_id"].as_str().unwrap().to_string(),
        );
    }
    d.post_json(&format!("/v1/renewal/conversations/{}/paused", lcs[0]), &json!({"reason": "on holiday"}))
        .data();
    d.post_empty(&format!("/v1/renewal/conversations/{}/auto", lcs[1])).data();
    seed_job(&d.db_path(), &JobSeed::new("job_p", "pending"));
    seed_job(&d.db_path(), &JobSeed::new("job_f", "failed"));
    d.post_empty("/v1/renewal/jobs/job_p/cancel").data();
    d.post_json("/v1/system/pause", &json!({"reason": "night"})).data();
    let before = snapshot(&d);
    let old_pid = d.pid();

    d.restart();
    assert_ne!(d.pid(), old_pid);
    assert_eq!(snapshot(&d), before, "data identical after a restart");
    let system = d.get("/v1/system").data();
    assert_eq!(system["automation_state"], "paused");
    assert_eq!(system["automation_reason"], "night");
    assert_eq!(system["counts"]["messages"], 5);
    assert_eq!(system["counts"]["conversations"], 3);
    let conv = d.get(&format!("/v1/renewal/conversations/{}", lcs[0])).data();
    assert_eq!(conv["automation_status"], "paused");
    assert_eq!(conv["pause_reason"], "on holiday");
    assert_eq!(d.get(&format!("/v1/renewal/conversations/{}", lcs[1])).data()["automation_status"], "auto");
    assert_eq!(d.get("/v1/renewal/jobs/job_p").data()["last_error"], "cancelled");
    // The artifact links follow the new address and still work.
    let m = d.get("/v1/messages/m3").data();
    assert!(m["artifact_url"].as_str().unwrap().starts_with(&d.base));
    assert_eq!(d.get("/artifact/msg/m3.txt").text(), "text 3");

    // Draining survives a restart too, and resume is durable.
    d.post_json("/v1/system/drain", &json!({"reason": "upgrade"})).data();
    d.restart();
    let system = d.get("/v1/system").data();
    assert_eq!(system["automation_state"], "draining");
    assert_eq!(system["automation_reason"], "upgrade");
    d.post_empty("/v1/system/resume").data();
    d.restart();
    let system = d.get("/v1/system").data();
    assert_eq!(system["automation_state"], "running");
    assert_eq!(system["automation_reason"], Value::Null);
}

/// After a clean stop `conductor.db` alone holds every commit: a copy of
/// the file without its WAL (a backup of "the database") has every message
/// and its effects. (Before, the read pool was still open when the writer
/// closed, and everything stayed in the WAL.)
#[test]
fn after_a_clean_stop_the_database_file_alone_holds_everything() {
    let mut d = daemon();
    for i in 0..3 {
        d.post_json("/v1/messages", &message_body("chatgpt", "c", &format!("m{i}"), "x")).data();
    }
    assert_eq!(d.stop().code(), Some(0));
    let db = d.db_path();
    let wal = db.with_file_name("conductor.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL still holds {wal_len} bytes");
    let copy = support::TempDir::new("db-alone");
    let alone = copy.path().join("conductor.db");
    std::fs::copy(&db, &alone).unwrap();
    let conn = rusqlite::Connection::open(&alone).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM messages"), 3);
    assert_eq!(count("SELECT COUNT(*) FROM local_conversations"), 1);
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let mut d = daemon();
    // Acknowledged state changes before the writers start.
    d.post_json("/v1/system/pause", &json!({"reason": "before the crash"})).data();
    let first = d.post_json("/v1/messages", &message_body("chatgpt", "c", "m-first", "x")).data();
    let lc = first["local_conversation_id"].as_str().unwrap().to_string();
    d.post_json(&format!("/v1/renewal/conversations/{lc}/paused"), &json!({"reason": "acked"})).data();

    let addr = d.addr;
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let acked = Arc::clone(&acked);
            let acked_count = Arc::clone(&acked_count);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut failures = 0;
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("t{t}-m{i}");
                    let mut body = message_body(
                        "chatgpt",
                        &format!("conv-{t}-{}", i % 4),
                        &id,
                        &format!("payload {id}"),
                    );
                    body["tab_id"] = json!(t + 1);
                    let body = body.to_string();
                    let r = try_request(
                        addr,
                        "POST",
                        "/v1/messages",
                        &[("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                        Duration::from_secs(5),
                    );
                    match r {
                        Ok(resp) if resp.status == 200 => {
                            acked.lock().unwrap().push(id);
                            acked_count.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(resp) => panic!("unexpected answer {}: {}", resp.status, resp.text()),
                        // The daemon is gone: stop after a few tries.
                        Err(_) => {
                            failures += 1;
                            if failures >= 3 {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(20), || acked_count.load(Ordering::Relaxed) >= 400),
        "writers made too little progress: {}",
        acked_count.load(Ordering::Relaxed)
    );
    // Kill in the middle of the stream: writers are still posting.
    let status = d.kill9();
    assert!(!status.success());
    let after_kill = acked_count.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer thread");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 400);
    assert!(acked.len() <= after_kill + 8, "at most one answer per writer was in flight at the kill");

    d.restart();
    let system = d.get("/v1/system").data();
    assert_eq!(system["automation_state"], "paused");
    assert_eq!(system["automation_reason"], "before the crash");
    let stored = system["counts"]["messages"].as_u64().unwrap() as usize;
    assert!(stored > acked.len(), "{stored} stored, {} acknowledged (+ m-first)", acked.len());
    assert_eq!(d.get(&format!("/v1/renewal/conversations/{lc}")).data()["pause_reason"], "acked");
    let mut missing = Vec::new();
    for id in &acked {
        let r = d.get(&format!("/v1/messages/{id}"));
        if r.status != 200 {
            missing.push(id.clone());
        } else {
            assert_eq!(r.json()["data"]["raw_text"], format!("payload {id}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged messages lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Every message stored has its conversation and link (no half-written ingest).
    let convs = d.get("/v1/renewal/conversations?limit=500").data();
    let links = d.get("/v1/renewal/links?limit=500").data();
    assert_eq!(convs["count"].as_u64().unwrap(), system["counts"]["conversations"].as_u64().unwrap());
    let mut all = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let page = d.get(&format!("/v1/messages?limit=500&offset={o}")).data();
        all.extend(page["messages"].as_array().unwrap().iter().cloned());
        offset = page["next_offset"].as_u64();
    }
    assert_eq!(all.len(), stored);
    for m in &all {
        let remote = m["conversation_id"].as_str().unwrap();
        assert!(
            links["links"].as_array().unwrap().iter().any(|l| l["remote_conversation_id"] == remote),
            "message {} has a link",
            m["message_id"]
        );
    }
}

#[test]
fn a_restart_after_kill_9_just_works() {
    let mut d = daemon();
    d.post_json("/v1/messages", &message_body("chatgpt", "c", "m1", "hello")).data();
    let old_pid = d.pid();
    d.kill9();
    // The killed daemon left its ready file behind; the lock died with it.
    assert!(d.state_dir().join("conductor.json").exists());
    d.restart();
    assert_ne!(d.pid(), old_pid);
    let ready = read_json(&d.state_dir().join("conductor.json")).unwrap();
    assert_eq!(ready["pid"], d.pid(), "the ready file names the new process");
    assert_eq!(ready["http_base"], d.base);
    assert_eq!(d.get("/v1/messages/m1").data()["raw_text"], "hello");
    // Twice in a row, then a clean stop.
    d.kill9();
    d.restart();
    d.assert_healthy("a second kill -9");
    assert_eq!(d.stop().code(), Some(0));
}
