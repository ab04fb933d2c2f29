//! Full-text search over message text: the FTS5 index of migration 008
//! (`messages_fts`), queried with the list filters and pagination of
//! `GET /v1/messages`, ranked by BM25, with a snippet around the matches;
//! and [`index_queued`], which the writer runs at the end of every
//! transaction so the index changes in the same commit as the messages
//! (migration 009 explains the queue the triggers fill).
//!
//! The caller's words never reach FTS5's query language as syntax: each
//! word becomes a quoted string (a trailing `*` makes it a prefix), and the
//! words are ANDed, so `"`, `-`, `:`, `NEAR` or a stray parenthesis in a
//! search is text to look for, never a query error.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Row};

use super::read::MESSAGE_COLUMNS;
use super::{Message, MessageFilter, Page, Store, StoreError};

/// Marks a match in FTS5's snippet; private-use characters that chat text
/// does not contain, so the snippet splits unambiguously into parts.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
/// Tokens of context in a snippet.
const SNIPPET_TOKENS: u32 = 16;

/// One page of a search: the messages with how they matched, and the
/// offset of the next page.
pub type SearchPage = (Vec<(Message, SearchHit)>, Option<u64>);

/// How one message matched.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// BM25 relevance, higher is better (FTS5's `bm25()` negated).
    pub score: f64,
    /// The text around the matches: `(text, is_match)` in order.
    pub snippet: Vec<(String, bool)>,
}

/// Indexes the queued messages. `CROSS JOIN` keeps the queue (a few rows)
/// the outer loop: left to itself the planner may walk every message and
/// look each one up in the queue, once per commit.
const INDEX_QUEUED_SQL: &str = "INSERT INTO messages_fts (rowid, raw_text)
     SELECT m.seq, m.raw_text FROM messages_fts_queue q CROSS JOIN messages m ON m.seq = q.seq";

/// Indexes the messages queued by the triggers of migration 009 and
/// empties the queue: one FTS5 write for the whole transaction. Runs at the
/// end of each of the writer's transactions, just before it commits, and
/// once when the store opens (rows other tools wrote meanwhile). Public for
/// the benchmarks' raw baselines and fills, which write rows the way the
/// writer does.
pub fn index_queued(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let queued: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM messages_fts_queue)")?
        .query_row([], |r| r.get(0))?;
    if queued {
        conn.prepare_cached(INDEX_QUEUED_SQL)?.execute([])?;
        conn.prepare_cached("DELETE FROM messages_fts_queue")?.execute([])?;
    }
    Ok(())
}

/// The FTS5 query for a search: every word quoted and required, a word
/// ending in `*` a prefix. None when there is no word.
pub fn fts_query(q: &str) -> Option<String> {
    let words: Vec<String> = q
        .split_whitespace()
        .filter_map(|w| {
            let (word, prefix) = match w.strip_suffix('*') {
                Some(stem) => (stem, true),
                None => (w, false),
            };
            let word = word.trim_matches('*');
            (!word.is_empty())
                .then(|| format!("\"{}\"{}", word.replace('"', "\"\""), if prefix { "*" } else { "" }))
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Splits FTS5's marked snippet into parts.
fn parts(marked: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_match = false;
    for ch in marked.chars() {
        if ch == OPEN || ch == CLOSE {
            if !current.is_empty() {
                out.push((std::mem::take(&mut current), in_match));
            }
            in_match = ch == OPEN;
        } else {
            current.push(ch);
        }
    }
    if !current.is_empty() {
        out.push((current, in_match));
    }
    out
}

fn hit_from_row(row: &Row<'_>) -> rusqlite::Result<(Message, SearchHit)> {
    let message = super::read::message_from_row(row, false)?;
    let bm25: f64 = row.get(13)?;
    let marked: Option<String> = row.get(14)?;
    let score = (-bm25 * 1000.0).round() / 1000.0;
    Ok((message, SearchHit { score, snippet: parts(&marked.unwrap_or_default()) }))
}

/// The statement `search_messages` runs and its parameters, public so that
/// `scripts/bench` times exactly the daemon's query against raw SQLite.
pub fn search_statement(query: &str, f: &MessageFilter, page: Page) -> (String, Vec<Value>) {
    let cols: Vec<String> = MESSAGE_COLUMNS
        .split(", ")
        .map(|c| if c.trim() == "raw_text" { "NULL".to_string() } else { format!("m.{}", c.trim()) })
        .collect();
    let mut clauses = vec!["messages_fts MATCH ?1".to_string()];
    let mut values = vec![Value::Text(query.to_string())];
    for (column, value) in
        [("platform", &f.platform), ("conversation_id", &f.conversation_id), ("role", &f.role)]
    {
        if let Some(v) = value {
            values.push(Value::Text(v.clone()));
            clauses.push(format!("m.{column} = ?{}", values.len()));
        }
    }
    let sql = format!(
        "SELECT {}, bm25(messages_fts), snippet(messages_fts, 0, char({}), char({}), '…', {SNIPPET_TOKENS})
         FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid
         WHERE {} ORDER BY rank LIMIT {} OFFSET {}",
        cols.join(", "),
        OPEN as u32,
        CLOSE as u32,
        clauses.join(" AND "),
        page.limit as u64 + 1,
        page.offset
    );
    (sql, values)
}

impl Store {
    /// Messages matching `query` (an `fts_query`), best first, with the
    /// filters and page of the plain list. Ordered by `rank` alone: FTS5
    /// then hands the matches over already sorted, so the join and the
    /// snippet run only for the rows of the page, not for every match
    /// (ties keep FTS5's order, the same on every call).
    pub fn search_messages(
        &self,
        query: &str,
        f: &MessageFilter,
        page: Page,
    ) -> Result<SearchPage, StoreError> {
        let (sql, values) = search_statement(query, f, page);
        self.reads().with(|c| {
            let mut stmt = c.prepare_cached(&sql)?;
            let mut items = stmt
                .query_map(params_from_iter(values.iter()), hit_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let next = (items.len() > page.limit as usize).then(|| {
                items.truncate(page.limit as usize);
                page.offset + page.limit as u64
            });
            Ok((items, next))
        })
    }
}

#[cfg(test)]
mod tests {
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

    fn queued(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM messages_fts_queue", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn the_index_follows_every_insert_change_and_delete() {
        let (_dir, conn) = migrated_writer("fts-triggers");
        insert(&conn, "a", Some(1), "the renewal plan");
        // Written by another tool without seq: 004's trigger numbers it,
        // and it is queued like the daemon's own.
        insert(&conn, "b", None, "another plan entirely");
        assert!(found(&conn, "plan").is_empty(), "queued, not indexed yet");
        assert_eq!(queued(&conn), 2);
        index(&conn);
        assert_eq!(found(&conn, "plan"), ["a", "b"]);
        assert_eq!(queued(&conn), 0);
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
        assert_eq!(queued(&conn), 0);
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
        assert_eq!(queued(&conn), 0);
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
            assert_eq!(queued(&conn), 1);
        }
        let (handle, store) = crate::store::open(dir.path(), Default::default()).unwrap();
        let q = fts_query("needle").unwrap();
        let (hits, _) = store
            .search_messages(&q, &MessageFilter::default(), crate::store::Page { limit: 10, offset: 0 })
            .unwrap();
        assert_eq!(hits.iter().map(|(m, _)| m.message_id.as_str()).collect::<Vec<_>>(), ["imported"]);
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
                insert(
                    &conn,
                    &format!("m{i:03}"),
                    Some(i + 1),
                    if i % 10 == 0 { "rare needle" } else { "hay" },
                );
            }
        }
        let mut conn = super::super::schema::open_writer(&path, None).unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        assert_eq!(
            found(&conn, "needle"),
            (0..100).step_by(10).map(|i| format!("m{i:03}")).collect::<Vec<_>>()
        );
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
}
