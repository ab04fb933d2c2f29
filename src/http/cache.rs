//! The read cache: rendered `data` text of list pages, reused while the
//! store has committed nothing since it was rendered, and rendered once when
//! many callers ask for the same page at the same time.
//!
//! Why: a list page of 50 jobs is ~87 KB of JSON, and rendering it costs
//! far more than sending it. The callers that ask for the same page over
//! and over (the status page, a script polling pending jobs) ask between
//! writes, so the same text is right for all of them. Correctness rests on
//! `Store::generation`: the writer bumps it after each commit and before
//! answering, and a caller that read generation `g` before asking is only
//! handed text whose query ran after `g` was read (an entry or a rendering
//! in flight at a generation `>= g`), so no reader is ever handed text older
//! than a write it has seen acknowledged.
//!
//! Every commit makes every entry old. Under steady writes each commit would
//! send every waiting caller of a popular page to the read pool at once, all
//! rendering the same text (32 callers × ~0.5 ms of CPU on two cores is the
//! p99 of the list benchmark). So a miss is single-flight per key: the first
//! caller renders, later callers at a generation it covers wait for its text.
//! If that rendering fails or panics, each waiter renders for itself, so an
//! error is never shared and never cached.
//!
//! Bounded in entries and bytes, so a stream of distinct queries costs a
//! lookup and a little memory, never growth; renderings in flight are
//! bounded by the callers rendering them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

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
    /// The rendering in flight per key, at most one: the newest started.
    flights: HashMap<String, Arc<Flight>>,
    bytes: usize,
    hits: u64,
    shared: u64,
    renders: u64,
}

struct Entry {
    generation: u64,
    text: Arc<str>,
}

/// One rendering in flight, which callers at a generation it covers wait on.
struct Flight {
    generation: u64,
    /// Set once, when the flight lands. Waiting on a `OnceLock` wakes every
    /// waiter at once; a condition variable hands its mutex from one woken
    /// waiter to the next, so on busy CPUs the last of a dozen waiters woke
    /// a scheduling delay per waiter later.
    outcome: OnceLock<FlightOutcome>,
}

enum FlightOutcome {
    Rendered(Arc<str>),
    /// The rendering returned an error or panicked: render for yourself.
    Failed,
}

/// What a caller does on a lookup.
enum Role {
    Hit(Arc<str>),
    Wait(Arc<Flight>),
    Render(Arc<Flight>),
}

/// Ends a flight when the leader's rendering returns or unwinds, so no
/// waiter is left waiting on a rendering that will never finish.
struct Landing<'a> {
    cache: &'a ReadCache,
    key: &'a str,
    flight: Arc<Flight>,
    outcome: FlightOutcome,
}

impl ReadCache {
    /// The text for `key` as of `generation`, rendering it with `render`
    /// on a miss, or waiting for a rendering of the same key already in
    /// flight at `generation` or later. `generation` must be read before
    /// `render` queries the store. Errors are returned and never cached.
    pub fn get_or_render<E>(
        &self,
        key: String,
        generation: u64,
        render: impl FnOnce() -> Result<Arc<str>, E>,
    ) -> Result<Arc<str>, E> {
        match self.role(&key, generation) {
            Role::Hit(text) => Ok(text),
            Role::Wait(flight) => match flight.wait() {
                Some(text) => Ok(text),
                None => self.render_alone(key, generation, render),
            },
            Role::Render(flight) => {
                let mut landing = Landing { cache: self, key: &key, flight, outcome: FlightOutcome::Failed };
                let text = render()?;
                // Kept before the flight lands, so a caller arriving in
                // between finds the entry instead of rendering again.
                self.insert(key.clone(), generation, text.clone());
                landing.outcome = FlightOutcome::Rendered(text.clone());
                drop(landing);
                Ok(text)
            }
        }
    }

    /// Decides, under the lock, whether this caller is served, waits, or
    /// renders (and then registers its flight).
    fn role(&self, key: &str, generation: u64) -> Role {
        let mut state = self.state.lock();
        if let Some(entry) = state.entries.get(key).filter(|e| e.generation >= generation) {
            let text = entry.text.clone();
            state.hits += 1;
            return Role::Hit(text);
        }
        if let Some(flight) = state.flights.get(key).filter(|f| f.generation >= generation) {
            let flight = flight.clone();
            state.shared += 1;
            return Role::Wait(flight);
        }
        state.renders += 1;
        let flight = Arc::new(Flight { generation, outcome: OnceLock::new() });
        state.flights.insert(key.to_owned(), flight.clone());
        Role::Render(flight)
    }

    /// A waiter whose flight failed renders without joining or starting a
    /// flight: the failure may repeat, and each caller gets its own error.
    fn render_alone<E>(
        &self,
        key: String,
        generation: u64,
        render: impl FnOnce() -> Result<Arc<str>, E>,
    ) -> Result<Arc<str>, E> {
        self.state.lock().renders += 1;
        let text = render()?;
        self.insert(key, generation, text.clone());
        Ok(text)
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

    /// (served from an entry, served by waiting on another caller's
    /// rendering, renderings) since start, for `/metrics`.
    pub fn counts(&self) -> (u64, u64, u64) {
        let state = self.state.lock();
        (state.hits, state.shared, state.renders)
    }
}

impl Flight {
    /// The flight's text once it lands, or `None` if it failed.
    fn wait(&self) -> Option<Arc<str>> {
        match self.outcome.wait() {
            FlightOutcome::Rendered(text) => Some(text.clone()),
            FlightOutcome::Failed => None,
        }
    }
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.cache.state.lock();
            if state.flights.get(self.key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                state.flights.remove(self.key);
            }
        }
        let outcome = std::mem::replace(&mut self.outcome, FlightOutcome::Failed);
        // Only the leader's landing sets it, so it is never set already.
        let _ = self.flight.outcome.set(outcome);
    }
}

impl State {
    fn bytes_of_entries(&self) -> usize {
        self.entries.values().map(|e| e.text.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::{Duration, Instant};

    use crossbeam_channel::{bounded, Receiver};

    use super::*;

    fn render(text: &str, calls: &mut u32) -> Result<Arc<str>, ()> {
        *calls += 1;
        Ok(Arc::from(text))
    }

    /// The kept entry for `key`: (generation, text).
    fn entry(cache: &ReadCache, key: &str) -> Option<(u64, String)> {
        cache.state.lock().entries.get(key).map(|e| (e.generation, e.text.to_string()))
    }

    #[test]
    fn serves_a_page_only_at_or_after_the_generation_it_was_rendered_at() {
        let cache = ReadCache::default();
        let mut calls = 0;
        assert_eq!(&*cache.get_or_render("k".into(), 2, || render("a", &mut calls)).unwrap(), "a");
        assert_eq!(&*cache.get_or_render("k".into(), 2, || render("b", &mut calls)).unwrap(), "a");
        // A caller that read an older generation may be handed newer text.
        assert_eq!(&*cache.get_or_render("k".into(), 1, || render("b", &mut calls)).unwrap(), "a");
        assert_eq!(calls, 1);
        assert_eq!(&*cache.get_or_render("k".into(), 3, || render("c", &mut calls)).unwrap(), "c");
        assert_eq!(calls, 2);
        assert_eq!(cache.counts(), (2, 0, 2));
    }

    #[test]
    fn errors_are_not_cached() {
        let cache = ReadCache::default();
        assert!(cache.get_or_render::<&str>("k".into(), 1, || Err("boom")).is_err());
        assert!(cache.state.lock().flights.is_empty());
        let mut calls = 0;
        assert_eq!(&*cache.get_or_render("k".into(), 1, || render("ok", &mut calls)).unwrap(), "ok");
        assert_eq!(calls, 1);
    }

    #[test]
    fn an_older_rendering_never_replaces_a_newer_one() {
        let cache = ReadCache::default();
        cache.insert("k".into(), 5, Arc::from("new"));
        cache.insert("k".into(), 4, Arc::from("old"));
        assert_eq!(entry(&cache, "k"), Some((5, "new".into())));
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
        assert_eq!(entry(&cache, "huge"), None);
    }

    /// Polls until `cache` counts `waiters` callers waiting on a flight.
    fn wait_for_waiters(cache: &ReadCache, waiters: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.counts().1 < waiters {
            assert!(Instant::now() < deadline, "waiters never arrived: {:?}", cache.counts());
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// A leader's render: blocks until the test says how it ends.
    fn gated(gate: Receiver<Result<&'static str, &'static str>>) -> Result<Arc<str>, &'static str> {
        match gate.recv().unwrap() {
            Ok(text) => Ok(Arc::from(text)),
            Err("panic") => panic!("rendering panicked"),
            Err(e) => Err(e),
        }
    }

    /// Starts a leader rendering `key` at generation 7, gated, then
    /// `followers` callers at `follower_generation` that render `own` if
    /// they must; returns their answers once `end` is sent to the leader.
    fn race(
        follower_generation: u64,
        followers: u64,
        end: Result<&'static str, &'static str>,
    ) -> (ReadCache, Vec<Result<String, &'static str>>) {
        let cache = ReadCache::default();
        let (gate_tx, gate_rx) = bounded(1);
        let results = thread::scope(|s| {
            let leader = s.spawn(|| cache.get_or_render("k".into(), 7, || gated(gate_rx)));
            while cache.counts().2 == 0 {
                thread::yield_now();
            }
            let others: Vec<_> = (0..followers)
                .map(|_| {
                    s.spawn(|| cache.get_or_render("k".into(), follower_generation, || Ok(Arc::from("own"))))
                })
                .collect();
            if follower_generation <= 7 {
                wait_for_waiters(&cache, followers);
            } else {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !others.iter().all(|t| t.is_finished()) {
                    assert!(Instant::now() < deadline, "a newer caller waited for an older rendering");
                    thread::sleep(Duration::from_millis(1));
                }
            }
            gate_tx.send(end).unwrap();
            let _ = leader.join();
            others.into_iter().map(|t| t.join().unwrap().map(|text| text.to_string())).collect()
        });
        (cache, results)
    }

    #[test]
    fn concurrent_misses_share_one_rendering() {
        let (cache, results) = race(7, 8, Ok("page"));
        assert!(results.iter().all(|r| r.as_deref() == Ok("page")), "{results:?}");
        assert_eq!(cache.counts(), (0, 8, 1));
        assert!(cache.state.lock().flights.is_empty());
        assert_eq!(entry(&cache, "k"), Some((7, "page".into())));
    }

    #[test]
    fn a_caller_at_a_newer_generation_does_not_wait_for_an_older_rendering() {
        let (cache, results) = race(8, 1, Ok("page"));
        assert_eq!(results, [Ok("own".to_string())]);
        assert_eq!(cache.counts(), (0, 0, 2));
        // The older rendering landed last and did not replace the newer.
        assert_eq!(entry(&cache, "k"), Some((8, "own".into())));
    }

    #[test]
    fn a_failed_rendering_sends_each_waiter_to_render_for_itself() {
        let (cache, results) = race(7, 3, Err("busy"));
        assert!(results.iter().all(|r| r.as_deref() == Ok("own")), "{results:?}");
        assert_eq!(cache.counts(), (0, 3, 4));
        assert!(cache.state.lock().flights.is_empty());
    }

    #[test]
    fn a_panicking_rendering_never_strands_its_waiters() {
        let (cache, results) = race(7, 3, Err("panic"));
        assert!(results.iter().all(|r| r.as_deref() == Ok("own")), "{results:?}");
        assert!(cache.state.lock().flights.is_empty());
    }
}
