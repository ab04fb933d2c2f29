//! The read cache: rendered `data` text of list pages, reused while the
//! store has committed nothing since it was rendered.
//!
//! Why: a list page of 50 jobs is ~87 KB of JSON, and rendering it costs
//! far more than sending it. The callers that ask for the same page over
//! and over (the status page, a script polling pending jobs) ask between
//! writes, so the same text is right for all of them. Correctness rests on
//! `Store::generation`: the writer bumps it after each commit and before
//! answering, and an entry is only served under the generation that was
//! read *before* its query ran, so no reader is ever handed text older than
//! a write it has seen acknowledged. Any commit empties the cache for
//! practical purposes (every entry's generation is then old).
//!
//! Bounded in entries and bytes, so a stream of distinct queries costs a
//! lookup and a little memory, never growth.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Most pages kept at once.
const MAX_ENTRIES: usize = 32;
/// Most bytes of rendered text kept at once.
const MAX_BYTES: usize = 4 << 20;
/// Pages larger than this are rendered every time.
const MAX_ENTRY_BYTES: usize = 1 << 20;

#[derive(Default)]
pub struct ReadCache {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

struct Entry {
    generation: u64,
    text: Arc<str>,
}

impl ReadCache {
    /// The text for `key` as of `generation`, rendering it with `render`
    /// on a miss. `generation` must be read before `render` queries the
    /// store. Errors are returned and never cached.
    pub fn get_or_render<E>(
        &self,
        key: String,
        generation: u64,
        render: impl FnOnce() -> Result<Arc<str>, E>,
    ) -> Result<Arc<str>, E> {
        if let Some(text) = self.lookup(&key, generation) {
            return Ok(text);
        }
        let text = render()?;
        self.insert(key, generation, text.clone());
        Ok(text)
    }

    fn lookup(&self, key: &str, generation: u64) -> Option<Arc<str>> {
        let mut state = self.state.lock();
        let found = state.entries.get(key).filter(|e| e.generation == generation).map(|e| e.text.clone());
        match found {
            Some(_) => state.hits += 1,
            None => state.misses += 1,
        }
        found
    }

    fn insert(&self, key: String, generation: u64, text: Arc<str>) {
        if text.len() > MAX_ENTRY_BYTES {
            return;
        }
        let mut state = self.state.lock();
        if state.entries.get(&key).is_some_and(|old| old.generation > generation) {
            // A newer rendering raced ahead of this one: keep it.
            return;
        }
        if let Some(old) = state.entries.remove(&key) {
            state.bytes -= old.text.len();
        }
        if state.entries.len() >= MAX_ENTRIES || state.bytes + text.len() > MAX_BYTES {
            // Stale entries go first; if that is not enough, everything.
            // Both are rare: commits make most entries stale anyway.
            state.entries.retain(|_, e| e.generation >= generation);
            if state.entries.len() >= MAX_ENTRIES || state.bytes_of_entries() + text.len() > MAX_BYTES {
                state.entries.clear();
            }
            state.bytes = state.bytes_of_entries();
        }
        state.bytes += text.len();
        state.entries.insert(key, Entry { generation, text });
    }

    /// (hits, misses) since start, for `/metrics`.
    pub fn counts(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.hits, state.misses)
    }
}

impl State {
    fn bytes_of_entries(&self) -> usize {
        self.entries.values().map(|e| e.text.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(text: &str, calls: &mut u32) -> Result<Arc<str>, ()> {
        *calls += 1;
        Ok(Arc::from(text))
    }

    #[test]
    fn serves_a_page_only_under_the_generation_it_was_rendered_at() {
        let cache = ReadCache::default();
        let mut calls = 0;
        assert_eq!(&*cache.get_or_render("k".into(), 1, || render("a", &mut calls)).unwrap(), "a");
        assert_eq!(&*cache.get_or_render("k".into(), 1, || render("b", &mut calls)).unwrap(), "a");
        assert_eq!(calls, 1);
        assert_eq!(&*cache.get_or_render("k".into(), 2, || render("c", &mut calls)).unwrap(), "c");
        assert_eq!(calls, 2);
        assert_eq!(cache.counts(), (1, 2));
    }

    #[test]
    fn errors_are_not_cached() {
        let cache = ReadCache::default();
        assert!(cache.get_or_render::<&str>("k".into(), 1, || Err("boom")).is_err());
        let mut calls = 0;
        assert_eq!(&*cache.get_or_render("k".into(), 1, || render("ok", &mut calls)).unwrap(), "ok");
        assert_eq!(calls, 1);
    }

    #[test]
    fn an_older_rendering_never_replaces_a_newer_one() {
        let cache = ReadCache::default();
        cache.insert("k".into(), 5, Arc::from("new"));
        cache.insert("k".into(), 4, Arc::from("old"));
        assert_eq!(cache.lookup("k", 5).as_deref(), Some("new"));
        assert_eq!(cache.lookup("k", 4), None);
    }

    #[test]
    fn stays_within_its_bounds() {
        let cache = ReadCache::default();
        for i in 0..(MAX_ENTRIES * 3) {
            cache.insert(format!("k{i}"), 1, Arc::from("x".repeat(200_000)));
            let state = cache.state.lock();
            assert!(state.entries.len() <= MAX_ENTRIES);
            assert!(state.bytes <= MAX_BYTES);
            assert_eq!(state.bytes, state.bytes_of_entries());
        }
        cache.insert("huge".into(), 1, Arc::from("x".repeat(MAX_ENTRY_BYTES + 1)));
        assert_eq!(cache.lookup("huge", 1), None);
    }
}
