//! Full-text search over message text: the FTS5 index of migration 008
//! (`messages_fts`), queried with the list filters and pagination of
//! `GET /v1/messages`, ranked by BM25, with a snippet around the matches;
//! and the indexing of the messages the triggers of migration 009 queue:
//! in batches of [`INDEX_BATCH`] by the writer, and whatever is queued
//! before a search, so a search never misses an acknowledged message.
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
/// look each one up in the queue, each time it runs.
const INDEX_QUEUED_SQL: &str = "INSERT INTO messages_fts (rowid, raw_text)
     SELECT m.seq, m.raw_text FROM messages_fts_queue q CROSS JOIN messages m ON m.seq = q.seq";

/// Messages queued before the writer indexes them at the end of a
/// transaction: one index segment per this many messages rather than one
/// per commit (under load a commit carries one or two messages). A search
/// indexes whatever is queued first ([`Store::search_messages`]).
pub(super) const INDEX_BATCH: i64 = 64;

/// Indexes the messages queued by the triggers of migration 009 and
/// empties the queue: one FTS5 write for all of them. Runs when the store
/// opens (rows other tools wrote meanwhile), before a search, at the end of
/// a writer transaction that leaves `INDEX_BATCH` (64) queued, and at
/// shutdown. Public for the benchmarks' raw baselines and fills, which
/// write rows the way the writer does.
pub fn index_queued(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    if queued(conn)? > 0 {
        index(conn)?;
    }
    Ok(())
}

/// Indexes the whole queue in a transaction of its own: when the store
/// opens (rows other tools wrote while it was stopped) and when it stops.
pub(super) fn index_all_queued(conn: &mut rusqlite::Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    index_queued(&tx)?;
    Ok(tx.commit()?)
}

/// Indexes the queue once it holds [`INDEX_BATCH`] messages: what the
/// writer runs before each commit.
pub(super) fn index_if_due(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    if queued(conn)? >= INDEX_BATCH {
        index(conn)?;
    }
    Ok(())
}

/// Indexes what the queue holds and empties it.
fn index(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    conn.prepare_cached(INDEX_QUEUED_SQL)?.execute([])?;
    conn.prepare_cached("DELETE FROM messages_fts_queue")?.execute([])?;
    Ok(())
}

/// Messages waiting to be indexed (a few dozen at most: one page).
fn queued(conn: &rusqlite::Connection) -> Result<i64, StoreError> {
    Ok(conn.prepare_cached("SELECT count(*) FROM messages_fts_queue")?.query_row([], |r| r.get(0))?)
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
        // Every message acknowledged before this search is committed, so
        // it is in the index or in the queue: indexing what the queue
        // holds first means a search never misses one. If that write fails
        // (a full disk), the search still runs, without those messages.
        if self.reads().with(queued)? > 0 {
            if let Err(e) = self.write(index_queued) {
                log::warn!(
                    "store: cannot index the newest messages before a search ({e}); searching without them"
                );
            }
        }
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
#[path = "search_tests.rs"]
mod tests;
