//! Rendered JSON of single rows in list pages, kept per row and reused
//! while the row read from the store is equal to the one it was rendered
//! from.
//!
//! Why: every commit makes every cached list page old (`cache.rs`), and
//! the first caller after a commit renders the page again while the other
//! callers of that page wait. For a page of jobs most of that rendering is
//! each job's JSON columns (payload, payload text, target snapshot) parsed
//! and written out again, for rows that mostly did not change. The row is
//! still read afresh every time, and a kept text is used only when the row
//! is equal field by field to the one it was rendered from, so a page is
//! exactly what rendering every row would give.
//!
//! Bounded in bytes (each entry counts its text twice, for the copy of the
//! row kept beside it); when full, everything is dropped, which costs one
//! rendering of each row still listed and never a search for what to drop.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// Most bytes kept (texts, and as much again for their rows).
const MAX_BYTES: usize = 2 << 20;

pub struct RowTexts<R> {
    state: Mutex<State<R>>,
}

impl<R> Default for RowTexts<R> {
    fn default() -> Self {
        RowTexts { state: Mutex::new(State { rows: HashMap::new(), bytes: 0 }) }
    }
}

struct State<R> {
    /// Row key → the row as rendered, and its text.
    rows: HashMap<String, (R, Arc<RawValue>)>,
    bytes: usize,
}

/// One row's JSON, serialised as it is.
#[derive(Clone)]
pub struct RowText(Arc<RawValue>);

impl Serialize for RowText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<R: Clone + PartialEq> RowTexts<R> {
    /// Each row's JSON, in order: the kept text where the kept row equals
    /// it, else `render(row)`, which is then kept under `key(row)`.
    pub fn texts(
        &self,
        rows: &[R],
        key: impl Fn(&R) -> &str,
        render: impl Fn(&R) -> Result<Box<RawValue>, serde_json::Error>,
    ) -> Result<Vec<RowText>, serde_json::Error> {
        let kept: Vec<Option<Arc<RawValue>>> = {
            let state = self.state.lock();
            rows.iter().map(|row| state.unchanged(key(row), row)).collect()
        };
        let mut texts = Vec::with_capacity(rows.len());
        let mut fresh = Vec::new();
        for (row, kept) in rows.iter().zip(kept) {
            let text = match kept {
                Some(text) => text,
                None => {
                    let text: Arc<RawValue> = render(row)?.into();
                    fresh.push((row, text.clone()));
                    text
                }
            };
            texts.push(RowText(text));
        }
        if !fresh.is_empty() {
            self.keep(fresh, key);
        }
        Ok(texts)
    }

    fn keep(&self, fresh: Vec<(&R, Arc<RawValue>)>, key: impl Fn(&R) -> &str) {
        let mut state = self.state.lock();
        for (row, text) in fresh {
            let cost = 2 * text.get().len();
            if cost > MAX_BYTES {
                continue;
            }
            if let Some((_, old)) = state.rows.remove(key(row)) {
                state.bytes -= 2 * old.get().len();
            }
            if state.bytes + cost > MAX_BYTES {
                state.rows.clear();
                state.bytes = 0;
            }
            state.bytes += cost;
            state.rows.insert(key(row).to_owned(), (row.clone(), text));
        }
    }
}

impl<R: PartialEq> State<R> {
    fn unchanged(&self, key: &str, row: &R) -> Option<Arc<RawValue>> {
        self.rows.get(key).filter(|(kept, _)| kept == row).map(|(_, text)| text.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[derive(Clone, PartialEq)]
    struct Row {
        id: String,
        body: String,
    }

    fn row(id: &str, body: &str) -> Row {
        Row { id: id.into(), body: body.into() }
    }

    /// The rows' texts joined, and how many were rendered.
    fn render(texts: &RowTexts<Row>, rows: &[Row]) -> (String, usize) {
        let renders = Cell::new(0);
        let out = texts
            .texts(
                rows,
                |r| &r.id,
                |r| {
                    renders.set(renders.get() + 1);
                    serde_json::value::to_raw_value(&serde_json::json!({ "id": r.id, "body": r.body }))
                },
            )
            .unwrap();
        (serde_json::to_string(&out).unwrap(), renders.get())
    }

    #[test]
    fn a_row_is_rendered_again_exactly_when_it_changed() {
        let texts = RowTexts::default();
        let (page, renders) = render(&texts, &[row("a", "1"), row("b", "2")]);
        assert_eq!(page, r#"[{"body":"1","id":"a"},{"body":"2","id":"b"}]"#);
        assert_eq!(renders, 2);
        let (page, renders) = render(&texts, &[row("b", "2"), row("a", "changed"), row("c", "3")]);
        assert_eq!(page, r#"[{"body":"2","id":"b"},{"body":"changed","id":"a"},{"body":"3","id":"c"}]"#);
        assert_eq!(renders, 2, "b was kept; a changed and c is new");
        assert_eq!(render(&texts, &[row("a", "changed")]).1, 0);
    }

    #[test]
    fn stays_within_its_bound() {
        let texts = RowTexts::default();
        let body = "x".repeat(100_000);
        for i in 0..40 {
            let (page, _) = render(&texts, &[row(&format!("r{i}"), &body)]);
            assert!(page.contains(&format!("\"r{i}\"")));
            let state = texts.state.lock();
            assert!(state.bytes <= MAX_BYTES);
            assert_eq!(state.bytes, state.rows.values().map(|(_, t)| 2 * t.get().len()).sum::<usize>());
        }
        assert!(texts.state.lock().rows.len() < 40);
    }
}
