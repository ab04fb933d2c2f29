//! Unit tests of `executions.rs`: which messages are live, the gate at a
//! message's start and before each block, the transaction that ends a
//! message (lock released, reply job), recovery, and the query plans.

use rusqlite::{params, Connection};

use super::*;
use crate::store::test_dir::migrated_writer;

const REPLY: fn() -> ReplySettings =
    || ReplySettings { artifact_base: "http://h/artifact/".into(), max_attempts: 3 };

/// An `auto` conversation `lc_1` whose newest message is `m1`, with an
/// active link to tab 7.
fn conversation(conn: &Connection, status: &str) {
    conn.execute_batch(&format!(
        "INSERT INTO local_conversations (local_conversation_id, platform, automation_status, last_message_id,
             created_at, updated_at) VALUES ('lc_1', 'chatgpt', '{status}', 'm1', 1, 1);
         INSERT INTO messages (id, platform, conversation_id, role, raw_text, observed_at, created_at, seq)
             VALUES ('m1', 'chatgpt', 'c1', 'assistant', 'text', 5, 5, 1);
         INSERT INTO conversation_links (link_id, local_conversation_id, platform, client_id, remote_conversation_id,
             target_kind, target_id, target_payload, is_active, observed_at, created_at, updated_at)
             VALUES ('link_1', 'lc_1', 'chatgpt', 'ff', 'c1', 'browser.proxy_delivery', 'tab:7', '{{\"tabId\":7}}',
                     1, 1, 1, 1);"
    ))
    .unwrap();
}

fn set_system(conn: &Connection, state: &str) {
    conn.execute(
        "INSERT INTO kv (key, value_json, updated_at) VALUES ('system.automation', ?1, 1)",
        params![format!("{{\"automation_state\":\"{state}\"}}")],
    )
    .unwrap();
}

fn blocks(text: &str) -> Vec<NewExecution> {
    crate::baa::blocks_to_record("m1", text, 2)
}

const TWO: &str = "```baa\n@conductor.status\n```\n```baa\n@conductor.exec echo hi\n```";

fn rows(conn: &Connection) -> Vec<(i64, String, Option<String>)> {
    conn.prepare("SELECT block_index, status, error FROM executions ORDER BY block_index")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn state(conn: &Connection) -> String {
    conn.query_row("SELECT execution_state FROM local_conversations", [], |r| r.get(0)).unwrap()
}

fn reply_text(conn: &Connection) -> Option<String> {
    let payload: Option<String> =
        conn.query_row("SELECT payload FROM renewal_jobs WHERE message_id = 'm1'", [], |r| r.get(0)).ok();
    payload
        .map(|p| serde_json::from_str::<serde_json::Value>(&p).unwrap()["text"].as_str().unwrap().to_string())
}

#[test]
fn blocks_are_recorded_only_when_live() {
    for (status, system, last, want) in [
        ("auto", None, "m1", 2),
        ("auto", Some("running"), "m1", 2),
        ("manual", None, "m1", 0),
        ("paused", None, "m1", 0),
        ("auto", Some("paused"), "m1", 0),
        ("auto", Some("draining"), "m1", 0),
        ("auto", None, "m2", 0),
    ] {
        let (_dir, conn) = migrated_writer("exec-live");
        conversation(&conn, status);
        conn.execute("UPDATE local_conversations SET last_message_id = ?1", params![last]).unwrap();
        if let Some(system) = system {
            set_system(&conn, system);
        }
        let n = record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap();
        assert_eq!(n, want, "{status} {system:?} {last}");
        assert_eq!(rows(&conn).len(), want);
    }
}

#[test]
fn a_block_is_recorded_once_however_often_it_arrives() {
    let (_dir, conn) = migrated_writer("exec-once");
    conversation(&conn, "auto");
    assert_eq!(record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap(), 2);
    assert_eq!(record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 11).unwrap(), 0);
    assert_eq!(rows(&conn).len(), 2);
}

#[test]
fn a_message_of_invalid_blocks_gets_its_reply_at_once() {
    let (_dir, conn) = migrated_writer("exec-invalid");
    conversation(&conn, "auto");
    let text = "```baa\nnope\n```\n```baa\n@conductor.exec {x\n```\n```baa\n@conductor.status\n```";
    record_live(&conn, "m1", "lc_1", &blocks(text), &REPLY(), 10).unwrap();
    let got = rows(&conn);
    assert_eq!(got[0], (0, "invalid".into(), Some("missing_header".into())));
    assert_eq!(got[1], (1, "invalid".into(), Some("invalid_json".into())));
    assert_eq!(got[2], (2, "rejected".into(), Some("too_many_blocks".into())));
    let text = reply_text(&conn).expect("a reply job");
    assert!(text.starts_with("[baa] block 0: error — missing_header: "), "{text}");
    assert!(text.contains("[baa] exec: error — invalid_json: "), "{text}");
    assert!(text.contains("[baa] block 2: error — too_many_blocks: "), "{text}");
    assert!(has_executions(&conn, "m1").unwrap());
    assert!(!has_executions(&conn, "m2").unwrap());
}

#[test]
fn a_message_runs_under_the_conversation_lock_and_ends_with_its_reply() {
    let (_dir, conn) = migrated_writer("exec-run");
    conversation(&conn, "auto");
    record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap();
    assert_eq!(reply_text(&conn), None);
    let Begin::Locked(pending) = begin_message(&conn, "m1", "lc_1", &REPLY(), 11).unwrap() else { panic!() };
    assert_eq!(pending.len(), 2);
    assert_eq!(state(&conn), "instruction_running");
    assert_eq!(start_block(&conn, &pending[0], &REPLY(), 12).unwrap(), Start::Go);
    assert!(start_block(&conn, &pending[0], &REPLY(), 12).is_err(), "a running block cannot start again");
    let ok = BlockResult {
        status: ExecutionStatus::Succeeded,
        summary: Some("{\"automation_state\":\"running\"}".into()),
        result_json: Some("{}".into()),
        error: None,
        artifact_path: None,
    };
    assert_eq!(finish_block(&conn, &pending[0], &ok, &REPLY(), 13).unwrap(), None);
    assert_eq!(state(&conn), "instruction_running", "one block is still open");
    // The second block is refused before it starts (say, a path outside
    // the roots): from pending straight to final.
    let refused = BlockResult {
        status: ExecutionStatus::Rejected,
        summary: Some("no".into()),
        result_json: None,
        error: Some("tool_not_allowed".into()),
        artifact_path: Some("artifacts/exec/x.txt".into()),
    };
    let done =
        finish_block(&conn, &pending[1], &refused, &REPLY(), 14).unwrap().expect("the message is done");
    assert!(done.reply_job_id.is_some());
    assert_eq!(state(&conn), "idle");
    assert_eq!(
        reply_text(&conn).unwrap(),
        "[baa] status: ok — {\"automation_state\":\"running\"}\n\n\
         [baa] exec: error — tool_not_allowed: no\nhttp://h/artifact/exec/x.txt"
    );
    let (status, due, kind): (String, i64, String) = conn
        .query_row("SELECT status, next_attempt_at, payload_kind FROM renewal_jobs", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!((status.as_str(), due, kind.as_str()), ("pending", 14, "json"));
    let started: Option<i64> =
        conn.query_row("SELECT started_at FROM executions WHERE block_index = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(started, None, "a refused block never started");
}

#[test]
fn the_dispatchers_lock_makes_the_worker_wait() {
    let (_dir, conn) = migrated_writer("exec-busy");
    conversation(&conn, "auto");
    record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap();
    conn.execute("UPDATE local_conversations SET execution_state = 'renewal_running'", []).unwrap();
    assert_eq!(begin_message(&conn, "m1", "lc_1", &REPLY(), 11).unwrap(), Begin::Busy);
    assert!(rows(&conn).iter().all(|r| r.1 == "pending"));
}

#[test]
fn automation_off_at_the_start_rejects_the_message_without_a_reply() {
    for (conv, system, reason) in [
        ("paused", None, "automation_paused"),
        ("manual", None, "automation_manual"),
        ("auto", Some("paused"), "system_paused"),
    ] {
        let (_dir, conn) = migrated_writer("exec-gate");
        conversation(&conn, "auto");
        record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap();
        conn.execute("UPDATE local_conversations SET automation_status = ?1", params![conv]).unwrap();
        if let Some(system) = system {
            set_system(&conn, system);
        }
        let Begin::Stopped(done) = begin_message(&conn, "m1", "lc_1", &REPLY(), 11).unwrap() else {
            panic!()
        };
        assert_eq!(done.reply_job_id, None, "{reason}");
        assert!(rows(&conn).iter().all(|r| r.1 == "rejected" && r.2.as_deref() == Some(reason)));
        assert_eq!(state(&conn), "idle");
    }
}

#[test]
fn a_pause_between_blocks_stops_the_rest_and_reports_what_ran() {
    let (_dir, conn) = migrated_writer("exec-midway");
    conversation(&conn, "auto");
    record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap();
    let Begin::Locked(pending) = begin_message(&conn, "m1", "lc_1", &REPLY(), 11).unwrap() else { panic!() };
    start_block(&conn, &pending[0], &REPLY(), 12).unwrap();
    let ok = BlockResult {
        status: ExecutionStatus::Succeeded,
        summary: None,
        result_json: None,
        error: None,
        artifact_path: None,
    };
    finish_block(&conn, &pending[0], &ok, &REPLY(), 13).unwrap();
    set_system(&conn, "paused");
    let Start::Stopped(done) = start_block(&conn, &pending[1], &REPLY(), 14).unwrap() else { panic!() };
    assert!(done.reply_job_id.is_some(), "block 0 ran: the assistant is told");
    assert_eq!(rows(&conn)[1], (1, "rejected".into(), Some("system_paused".into())));
    assert_eq!(state(&conn), "idle");
    assert!(reply_text(&conn).unwrap().contains("[baa] exec: error — system_paused: "));
}

#[test]
fn recovery_fails_running_blocks_and_replies_for_finished_messages() {
    let (_dir, conn) = migrated_writer("exec-recover");
    conversation(&conn, "auto");
    record_live(&conn, "m1", "lc_1", &blocks(TWO), &REPLY(), 10).unwrap();
    let Begin::Locked(pending) = begin_message(&conn, "m1", "lc_1", &REPLY(), 11).unwrap() else { panic!() };
    start_block(&conn, &pending[0], &REPLY(), 12).unwrap();
    // Block 1 is still pending: the worker runs it after the start.
    let report = recover(&conn, &REPLY(), 20).unwrap();
    assert_eq!(report, ExecutionRecovery { interrupted: 1, replies: vec![] });
    assert_eq!(rows(&conn)[0], (0, "failed".into(), Some("interrupted".into())));
    assert_eq!(rows(&conn)[1].1, "pending");
    assert_eq!(reply_text(&conn), None);
    // Block 1 interrupted too: now the message is done and replies.
    start_block(&conn, &pending[1], &REPLY(), 21).unwrap();
    let report = recover(&conn, &REPLY(), 30).unwrap();
    assert_eq!(report, ExecutionRecovery { interrupted: 1, replies: vec!["m1".into()] });
    assert!(reply_text(&conn).unwrap().contains("[baa] status: error — interrupted: "));
    assert_eq!(recover(&conn, &REPLY(), 40).unwrap(), ExecutionRecovery::default());
}

fn explain(conn: &Connection, how: &str, sql: &str, args: usize, column: usize) -> Vec<String> {
    let values: Vec<rusqlite::types::Value> = (0..args).map(|_| rusqlite::types::Value::Integer(0)).collect();
    conn.prepare(&format!("{how} {sql}"))
        .unwrap()
        .query_map(rusqlite::params_from_iter(values.iter()), |r| r.get::<_, String>(column))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The worker's scan and recovery read only their partial indexes, in
/// order; the list filters use the index that fits them; the projector's
/// per-message check is one index probe.
#[test]
fn execution_queries_use_the_intended_indexes() {
    let (_dir, conn) = migrated_writer("exec-plans");
    let list = |filter: &str| {
        format!(
            "SELECT {COLUMNS} FROM executions {filter} ORDER BY created_at DESC, instruction_id DESC LIMIT 51 OFFSET 0"
        )
    };
    let cases = [
        (
            "SELECT message_id, local_conversation_id FROM executions WHERE status = 'pending' ORDER BY rowid LIMIT ?1"
                .to_string(),
            1,
            "SEARCH executions USING INDEX executions_pending (status=?)",
        ),
        (
            "SELECT message_id, local_conversation_id FROM executions WHERE status = 'running' ORDER BY rowid"
                .to_string(),
            0,
            "SEARCH executions USING INDEX executions_running (status=?)",
        ),
        ("SELECT 1 FROM executions WHERE message_id = ?1 LIMIT 1".to_string(), 1, "SEARCH executions USING COVERING INDEX executions_message (message_id=?)"),
        (list(""), 0, "SCAN executions USING INDEX executions_created"),
        (list("WHERE status = ?1"), 1, "SEARCH executions USING INDEX executions_status_created (status=?)"),
        (list("WHERE tool = ?1"), 1, "SEARCH executions USING INDEX executions_tool_created (tool=?)"),
        (
            list("WHERE local_conversation_id = ?1"),
            1,
            "SEARCH executions USING INDEX executions_conversation (local_conversation_id=?)",
        ),
    ];
    for (sql, args, want) in cases {
        assert_eq!(explain(&conn, "EXPLAIN QUERY PLAN", &sql, args, 3), vec![want.to_string()], "{sql}");
    }
    let ops = explain(&conn, "EXPLAIN", "SELECT 1 FROM executions WHERE message_id = ?1 LIMIT 1", 1, 1);
    assert!(!ops.iter().any(|op| op == "OpenEphemeral" || op == "SorterOpen"), "{ops:?}");
}
