//! Query-plan tests of `read.rs` (split out to keep that file short): the
//! planner runs without statistics, so a plan that is right on an empty
//! database is right on every database.

use super::*;
use rusqlite::params_from_iter;

/// The plan of each query, on a fresh database with the full schema.
fn plans(queries: &[(&str, usize)]) -> Vec<Vec<String>> {
    explain(queries, "EXPLAIN QUERY PLAN", 3)
}

/// The bytecode opcodes of each query.
fn opcodes(queries: &[(&str, usize)]) -> Vec<Vec<String>> {
    explain(queries, "EXPLAIN", 1)
}

fn explain(queries: &[(&str, usize)], how: &str, column: usize) -> Vec<Vec<String>> {
    let (_dir, conn) = super::super::test_dir::migrated_writer("plan");
    let out = queries
        .iter()
        .map(|(sql, params)| {
            let args: Vec<Value> = (0..*params).map(|_| Value::Integer(0)).collect();
            conn.prepare(&format!("{how} {sql}"))
                .unwrap()
                .query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(column))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        })
        .collect();
    out
}

/// The scan walks the partial due index in order and never sorts the
/// pending jobs; the list filters use the index that fits them. The
/// planner runs without statistics (QPSG), so what holds here holds
/// for every database, empty or full.
#[test]
fn job_queries_use_the_intended_indexes() {
    let list = |filter: &str| {
        format!("SELECT {JOB_COLUMNS} FROM renewal_jobs {filter} ORDER BY created_at DESC, job_id DESC LIMIT 51 OFFSET 0")
    };
    let got = plans(&[
        (due_jobs_sql(), 2),
        (&list("WHERE status = ?1"), 1),
        (&list("WHERE local_conversation_id = ?1"), 1),
        (&list("WHERE status = ?1 AND local_conversation_id = ?2"), 2),
        (&list(""), 0),
    ]);
    let want: [&[&str]; 5] = [
        &["SEARCH renewal_jobs USING INDEX renewal_jobs_due (status=? AND next_attempt_at<?)"],
        &["SEARCH renewal_jobs USING INDEX renewal_jobs_status_created (status=?)"],
        &["SEARCH renewal_jobs USING INDEX renewal_jobs_conversation (local_conversation_id=?)"],
        &["SEARCH renewal_jobs USING INDEX renewal_jobs_conversation (local_conversation_id=?)"],
        &["SCAN renewal_jobs USING INDEX renewal_jobs_created"],
    ];
    assert_eq!(
        got,
        want.iter().map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>()).collect::<Vec<_>>()
    );
}

/// The projector's one query per message searches indexes only (the
/// one `SCAN` is of its own one-row subquery `f`).
#[test]
fn the_projection_target_query_scans_no_table() {
    let got = plans(&[(projection_target_sql(), 2)]).remove(0);
    assert!(!got.is_empty());
    assert!(got.iter().all(|step| !step.starts_with("SCAN") || step == "SCAN f"), "{got:?}");
    assert!(got.iter().any(|step| step.contains("conversation_links_remote")), "{got:?}");
}

/// The dispatcher's read before every delivery searches by key and by the
/// one-active-link index, and its link columns start where the
/// conversation's end.
#[test]
fn the_conversation_by_id_query_searches_and_splits_its_columns_right() {
    let got = plans(&[(conversation_by_id_sql(), 1)]).remove(0);
    assert!(got.iter().all(|step| step.starts_with("SEARCH")), "{got:?}");
    assert!(got.iter().any(|step| step.contains("conversation_links_one_active")), "{got:?}");
    assert_eq!(CONVERSATION_COLUMNS.split(',').count(), CONVERSATION_FIELDS);
}

/// The statements run for every message and every renewal job never open
/// a temporary b-tree: `ORDER BY … LIMIT`, `RETURNING`, a materialised
/// subquery and a CHECK with an `IN` list of three or more values each open
/// and close one per run; for ingest that was about a third of the store
/// writer's instructions per message (docs/BENCHMARKS.md).
#[test]
fn per_message_statements_open_no_temporary_btree() {
    let mut statements: Vec<(&str, usize)> = super::super::ingest::per_message_statements()
        .into_iter()
        .chain(super::super::renewal::per_job_statements())
        .map(|sql| (sql, highest_parameter(sql)))
        .collect();
    statements.push((projection_target_sql(), 2));
    statements.push((conversation_by_id_sql(), 1));
    for (sql, ops) in statements.iter().zip(opcodes(&statements)) {
        assert!(!ops.is_empty());
        assert!(!ops.iter().any(|op| op == "OpenEphemeral" || op == "SorterOpen"), "{}: {ops:?}", sql.0);
    }
}

/// The highest `?N` in a statement: how many parameters it takes.
fn highest_parameter(sql: &str) -> usize {
    sql.split('?')
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn an_unreadable_system_state_fails_closed_as_paused() {
    let good = parse_system_state(r#"{"automation_state":"draining","automation_reason":"r"}"#, 5);
    assert_eq!(
        (good.automation_state, good.automation_reason.as_deref()),
        (AutomationState::Draining, Some("r"))
    );
    for bad in ["", "{", "null", r#"{"automation_state":"RUNNING"}"#, r#"{"automation_state":1}"#, "[]"] {
        let s = parse_system_state(bad, 7);
        assert_eq!(s.automation_state, AutomationState::Paused, "{bad:?}");
        assert_eq!(s.automation_reason.as_deref(), Some(UNREADABLE_STATE_REASON), "{bad:?}");
        assert_eq!(s.updated_at, Some(7));
    }
}

/// The conversations list walks the conversations in its order by index
/// (no sort, whatever the filters) and finds each one's active link by the
/// one-active-link index: one statement per page.
#[test]
fn the_conversations_list_joins_each_active_link_by_index() {
    let order = "ORDER BY c.updated_at DESC, c.local_conversation_id DESC LIMIT 51 OFFSET 0";
    let filters = ["", "WHERE c.platform = ?1", "WHERE c.platform = ?1 AND c.automation_status = ?2"];
    for (i, filter) in filters.iter().enumerate() {
        let sql = format!("{} {filter} {order}", conversations_with_links_sql());
        let got = plans(&[(&sql, i)]).remove(0);
        let want = [
            "SCAN c USING INDEX local_conversations_updated",
            "SEARCH l USING INDEX conversation_links_one_active (local_conversation_id=?) LEFT-JOIN",
        ];
        assert_eq!(got, want, "{filter}");
    }
}
