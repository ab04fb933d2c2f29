//! Paged list queries: a WHERE clause built from the filters a list route
//! was given, and one query that fetches a page plus one row to learn
//! whether another page follows. Shared by the reads of every list
//! (`read.rs`) and of the executions (`exec_store.rs`).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection, Row};

use super::model::Page;
use super::StoreError;

/// A WHERE clause assembled from optional equality filters.
#[derive(Default)]
pub(super) struct Where {
    clauses: Vec<String>,
    values: Vec<Value>,
}

impl Where {
    pub(super) fn eq(&mut self, column: &str, value: Option<Value>) -> &mut Self {
        if let Some(value) = value {
            self.values.push(value);
            self.clauses.push(format!("{column} = ?{}", self.values.len()));
        }
        self
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub(super) fn text(v: &Option<String>) -> Option<Value> {
    v.clone().map(Value::Text)
}

/// Runs a paged list query: fetches one row more than asked to learn whether
/// a next page exists, without a COUNT over the table.
pub(super) fn page_query<T>(
    conn: &Connection,
    base: &str,
    filter: &Where,
    order: &str,
    page: Page,
    map: impl Fn(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<(Vec<T>, Option<u64>), StoreError> {
    let sql = format!(
        "{base} {} ORDER BY {order} LIMIT {} OFFSET {}",
        filter.sql(),
        page.limit as u64 + 1,
        page.offset
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut items =
        stmt.query_map(params_from_iter(filter.values.iter()), map)?.collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() > page.limit as usize {
        items.truncate(page.limit as usize);
        Some(page.offset + page.limit as u64)
    } else {
        None
    };
    Ok((items, next))
}
