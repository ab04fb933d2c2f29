//! Tests of `search.rs` (split out to keep that file short): the index
//! the triggers and the writer keep, the batches and the search's
//! catch-up, and the query text.

use super::*;
use crate::store::test_dir::migrated_writer;
use rusqlite::Connection;

fn insert(conn: &Connection, id: &str, seq: Option<i64>, text: &str) {
    conn.execute(
        "INSERT INTO messages (id, platform, conversation_id, role, raw_text, observed_at, created_at, seq)
         VALUES (?1, 'claude', 'c', 'assistant', ?2, 1, 1, ?3)",
        rusqlite::params![id, text, seq],
    )
    .unwrap();
}

fn found(conn: &Connection, words: &str) -> Vec<String> {
    let sql = "SELECT m.id FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid
               WHERE messages_fts MATCH ?1 ORDER BY m.id";
    let mut stmt = conn.prepare(sql).unwrap();
    let q = fts_query(words).unwrap();
    stmt.query_map([q], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// FTS5's own check that the index holds exactly the content's words.
fn index_matches_content(conn: &Connection) {
    conn.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')", []).unwrap();
}

/// What the writer does at the end of each transaction.
fn index(conn: &Connection) {
    index_queued(conn).unwrap();
}

#[test]
fn the_index_follows_every_insert_change_and_delete() {
    let (_dir, conn) = migrated_writer("fts-triggers");
    insert(&conn, "a", Some(1), "the renewal plan");
    // Written by another tool without seq: 004's trigger numbers it,
    // and it is queued like the daemon's own.
    insert(&conn, "b", None, "another plan entirely");
    assert!(found(&conn, "plan").is_empty(), "queued, not indexed yet");
    assert_eq!(queued(&conn).unwrap(), 2);
    index(&conn);
    assert_eq!(found(&conn, "plan"), ["a", "b"]);
    assert_eq!(queued(&conn).unwrap(), 0);
    conn.execute("UPDATE messages SET raw_text = 'nothing here' WHERE id = 'a'", []).unwrap();
    assert_eq!(found(&conn, "plan"), ["b"], "the old words leave at once");
    index(&conn);
    assert_eq!(found(&conn, "nothing"), ["a"]);
    conn.execute("DELETE FROM messages WHERE id = 'b'", []).unwrap();
    assert!(found(&conn, "plan").is_empty());
    index_matches_content(&conn);
    // A rolled-back message leaves no trace in the index or the queue.
    conn.execute_batch("BEGIN; INSERT INTO messages (id, platform, conversation_id, role, raw_text, observed_at, created_at, seq) VALUES ('c', 'x', 'c', 'assistant', 'ghost words', 1, 1, 9); ROLLBACK;").unwrap();
    index(&conn);
    assert!(found(&conn, "ghost").is_empty());
    assert_eq!(queued(&conn).unwrap(), 0);
    index_matches_content(&conn);
}

/// Within one transaction a message can be written, changed, renumbered
/// and deleted before the writer indexes the queue: the index must end
/// up holding exactly the surviving rows' words (FTS5's 'delete' of a
/// row it never indexed would corrupt it).
#[test]
fn changes_before_indexing_leave_the_index_exact() {
    let (_dir, conn) = migrated_writer("fts-queue");
    insert(&conn, "kept", Some(1), "first draft");
    insert(&conn, "gone", Some(2), "doomed words");
    insert(&conn, "moved", Some(3), "moving words");
    conn.execute("UPDATE messages SET raw_text = 'final text' WHERE id = 'kept'", []).unwrap();
    conn.execute("DELETE FROM messages WHERE id = 'gone'", []).unwrap();
    conn.execute("UPDATE messages SET seq = 30 WHERE id = 'moved'", []).unwrap();
    index(&conn);
    assert_eq!(found(&conn, "final"), ["kept"]);
    assert!(found(&conn, "draft").is_empty());
    assert!(found(&conn, "doomed").is_empty());
    assert_eq!(found(&conn, "moving"), ["moved"]);
    assert_eq!(queued(&conn).unwrap(), 0);
    index_matches_content(&conn);
    // And an indexed row renumbered afterwards is found under its new seq.
    conn.execute("UPDATE messages SET seq = 31 WHERE id = 'moved'", []).unwrap();
    index(&conn);
    assert_eq!(found(&conn, "moving"), ["moved"]);
    index_matches_content(&conn);
}

/// One transaction of many messages is one write to the index (one new
/// segment), not one per message: what migration 009 is for.
#[test]
fn a_transaction_of_messages_makes_one_index_segment() {
    let (_dir, mut conn) = migrated_writer("fts-segments");
    // FTS5 keeps each segment's pages in `_data` under ids from
    // 1 << 37 up, the segment's id in the bits above 37.
    let segments = |conn: &Connection| -> i64 {
        conn.query_row(
            "SELECT count(DISTINCT id >> 37) FROM messages_fts_data WHERE id >= 137438953472",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    let before = segments(&conn);
    let tx = conn.transaction().unwrap();
    for i in 0..20 {
        insert(&tx, &format!("m{i}"), Some(i + 1), &format!("word{i} shared"));
        // A statement that takes a statement journal, as the writer's do.
        tx.execute("UPDATE messages SET summary = 's' WHERE id = ?1", [format!("m{i}")]).unwrap();
    }
    index(&tx);
    tx.commit().unwrap();
    assert_eq!(found(&conn, "shared").len(), 20);
    assert_eq!(segments(&conn) - before, 1, "one segment for the whole transaction");
    index_matches_content(&conn);
}

/// Indexing walks the queue and looks each message up by `seq`, never
/// the other way round (which costs a scan of every message per
/// commit).
#[test]
fn indexing_walks_the_queue_not_the_messages() {
    let (_dir, conn) = migrated_writer("fts-plan");
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {INDEX_QUEUED_SQL}"))
        .unwrap()
        .query_map([], |r| r.get(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(plan[0].starts_with("SCAN q"), "{plan:?}");
    assert!(plan[1].starts_with("SEARCH m USING INDEX messages_seq (seq=?)"), "{plan:?}");
}

/// A message another tool wrote while the daemon was stopped is queued
/// by the triggers; the store indexes it when it opens, before any
/// write of its own.
#[test]
fn the_store_indexes_what_other_tools_queued_when_it_opens() {
    let dir = crate::store::test_dir::TestDir::new("fts-open");
    let (handle, _store) = crate::store::open(dir.path(), Default::default()).unwrap();
    handle.shutdown();
    {
        let conn = Connection::open(crate::store::db_path(dir.path())).unwrap();
        insert(&conn, "imported", None, "an imported needle");
        assert_eq!(queued(&conn).unwrap(), 1);
    }
    let (handle, store) = crate::store::open(dir.path(), Default::default()).unwrap();
    let q = fts_query("needle").unwrap();
    let (hits, _) = store
        .search_messages(&q, &MessageFilter::default(), crate::store::Page { limit: 10, offset: 0 })
        .unwrap();
    assert_eq!(hits.iter().map(|(m, _)| m.message_id.as_str()).collect::<Vec<_>>(), ["imported"]);
    handle.shutdown();
}

/// The writer indexes in batches of `INDEX_BATCH`; a search first
/// indexes what is queued, so it finds every acknowledged message; the
/// queue is empty after a stop.
#[test]
fn the_writer_indexes_in_batches_and_a_search_indexes_the_rest() {
    let dir = crate::store::test_dir::TestDir::new("fts-batches");
    let (handle, store) = crate::store::open(dir.path(), Default::default()).unwrap();
    let write = |i: i64| {
        store
            .write(move |c| {
                insert(c, &format!("m{i:03}"), Some(i), &format!("word{i} common"));
                Ok(())
            })
            .unwrap()
    };
    let waiting = || store.reads().with(queued).unwrap();
    let search = |words: &str| {
        let page = crate::store::Page { limit: 100, offset: 0 };
        let (hits, _) =
            store.search_messages(&fts_query(words).unwrap(), &MessageFilter::default(), page).unwrap();
        hits.len()
    };
    for i in 1..INDEX_BATCH {
        write(i);
    }
    assert_eq!(waiting(), INDEX_BATCH - 1, "below a batch, messages wait");
    write(INDEX_BATCH);
    assert_eq!(waiting(), 0, "a full batch is indexed in the commit that fills it");
    assert_eq!(search("common"), INDEX_BATCH as usize);
    write(INDEX_BATCH + 1);
    assert_eq!(waiting(), 1);
    assert_eq!(search("word65"), 1, "a search indexes what waits first");
    assert_eq!(waiting(), 0);
    write(INDEX_BATCH + 2);
    handle.shutdown();
    let conn = Connection::open(crate::store::db_path(dir.path())).unwrap();
    assert_eq!(queued(&conn).unwrap(), 0, "a stop indexes what waits");
    assert_eq!(found(&conn, "word66"), ["m066"]);
    index_matches_content(&conn);
}

/// When the queue cannot be indexed (the writer cannot write: a full
/// disk), a search still answers, without the queued
/// messages; once it can write again, the next search has them.
#[test]
fn a_search_answers_even_when_the_queue_cannot_be_indexed() {
    let dir = crate::store::test_dir::TestDir::new("fts-full");
    let (handle, store) = crate::store::open(dir.path(), Default::default()).unwrap();
    store
        .write(|c| {
            insert(c, "indexed", Some(1), "needle one");
            index_queued(c)
        })
        .unwrap();
    store
        .write(|c| {
            // Thousands of distinct words: indexing them takes pages.
            let words: Vec<String> = (0..20_000).map(|i| format!("w{i}")).collect();
            insert(c, "waiting", Some(2), &format!("needle two {}", words.join(" ")));
            Ok(())
        })
        .unwrap();
    // No page beyond those in use: writing the index needs new ones.
    let full = |full: bool| {
        store
            .write(move |c| {
                let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
                let max = if full { pages } else { 1 << 30 };
                Ok(c.query_row(&format!("PRAGMA max_page_count = {max}"), [], |r| r.get::<_, i64>(0))?)
            })
            .unwrap()
    };
    let search = || {
        let page = crate::store::Page { limit: 10, offset: 0 };
        let (hits, _) =
            store.search_messages(&fts_query("needle").unwrap(), &MessageFilter::default(), page).unwrap();
        let mut ids: Vec<String> = hits.into_iter().map(|(m, _)| m.message_id).collect();
        ids.sort();
        ids
    };
    full(true);
    assert_eq!(search(), ["indexed"]);
    full(false);
    assert_eq!(search(), ["indexed", "waiting"]);
    handle.shutdown();
}

/// A database from before the index (schema 7) gets every existing
/// message indexed by the migration.
#[test]
fn the_migration_indexes_existing_messages() {
    let dir = crate::store::test_dir::TestDir::new("fts-upgrade");
    let path = dir.path().join("old.db");
    {
        let conn = super::super::schema::open_writer(&path, None).unwrap();
        for (_, sql) in &super::super::schema::MIGRATIONS[..7] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 7).unwrap();
        for i in 0..100 {
            insert(&conn, &format!("m{i:03}"), Some(i + 1), if i % 10 == 0 { "rare needle" } else { "hay" });
        }
    }
    let mut conn = super::super::schema::open_writer(&path, None).unwrap();
    super::super::schema::migrate(&mut conn).unwrap();
    assert_eq!(found(&conn, "needle"), (0..100).step_by(10).map(|i| format!("m{i:03}")).collect::<Vec<_>>());
    index_matches_content(&conn);
}

#[test]
fn words_become_quoted_required_terms() {
    assert_eq!(fts_query("renewal plan").as_deref(), Some("\"renewal\" \"plan\""));
    assert_eq!(fts_query("  plan*  ").as_deref(), Some("\"plan\"*"));
    assert_eq!(
        fts_query("say \"hi\" NEAR(a b) -x col:y").as_deref(),
        Some("\"say\" \"\"\"hi\"\"\" \"NEAR(a\" \"b)\" \"-x\" \"col:y\"")
    );
    assert_eq!(fts_query("   "), None);
    assert_eq!(fts_query("* **"), None);
}

#[test]
fn snippets_split_into_matches_and_context() {
    let marked = format!("…the {OPEN}plan{CLOSE} we {OPEN}discussed{CLOSE}");
    assert_eq!(
        parts(&marked),
        vec![
            ("…the ".to_string(), false),
            ("plan".to_string(), true),
            (" we ".to_string(), false),
            ("discussed".to_string(), true)
        ]
    );
    assert_eq!(parts(""), vec![]);
}
