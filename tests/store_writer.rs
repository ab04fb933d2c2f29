//! The store through its library API: group commit under many concurrent
//! callers, a failing write reported to its own caller with nothing
//! half-written left behind (a trigger that aborts, a full database), the
//! writer serving on afterwards, idempotent duplicate ingest, and shutdown.

mod support;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use baa_conductor::store::{
    self, AutomationState, ConversationFilter, IngestSettings, LinkFilter, MessageFilter, NewMessage, Page,
    Store, StoreError, StoreOptions,
};
use support::TempDir;

const SETTINGS: IngestSettings = IngestSettings { summary_limit: 200, repeat_pause_threshold: 3, baa: None };
const ALL: Page = Page { limit: 500, offset: 0 };
/// Every caller must be answered within this (a hung writer fails the test
/// instead of hanging it).
const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

fn msg(id: &str, conversation: &str, text: &str) -> NewMessage {
    NewMessage {
        platform: "chatgpt".into(),
        conversation_id: conversation.into(),
        message_id: id.into(),
        role: "assistant".into(),
        text: text.into(),
        observed_at: 1_000,
        page_url: Some(format!("https://chatgpt.com/c/{conversation}")),
        page_title: Some("Title".into()),
        tab_id: Some(7),
        route: None,
        organization_id: None,
        shell_page: false,
        client_id: Some("ff-1".into()),
    }
}

fn open(dir: &TempDir, max_page_count: Option<u64>) -> (store::Handle, Store) {
    store::open(dir.path(), StoreOptions { readers: 2, max_page_count }).expect("open store")
}

/// Runs `f` on a thread and fails the test if it does not finish in time.
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(ANSWER_DEADLINE)
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_DEADLINE:?}"))
}

fn conversation_count_for(store: &Store, conversation: &str) -> usize {
    let (links, _) = store
        .links(&LinkFilter { remote_conversation_id: Some(conversation.into()), ..Default::default() }, ALL)
        .unwrap();
    links.len()
}

#[test]
fn group_commit_answers_many_concurrent_callers() {
    let dir = TempDir::new("store");
    let (handle, store) = open(&dir, None);
    let threads = 32;
    let per_thread = 25;
    let barrier = Arc::new(Barrier::new(threads));
    let results = within_deadline("concurrent ingests", {
        let store = store.clone();
        move || {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let store = store.clone();
                    let barrier = Arc::clone(&barrier);
                    thread::spawn(move || {
                        barrier.wait();
                        let mut out = Vec::new();
                        for i in 0..per_thread {
                            let id = format!("t{t}-m{i}");
                            let outcome =
                                store.ingest(msg(&id, &format!("conv-{t}"), &format!("text {id}")), SETTINGS);
                            // Read-your-writes: once answered, the write is visible.
                            let visible = store.message(&id).unwrap().is_some();
                            out.push((id, outcome, visible));
                            if i % 5 == 0 {
                                store
                                    .set_system_state(AutomationState::Paused, Some(format!("t{t}")))
                                    .unwrap();
                            }
                        }
                        out
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect::<Vec<_>>()
        }
    });
    assert_eq!(results.len(), threads * per_thread);
    for (id, outcome, visible) in &results {
        let outcome = outcome.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(!outcome.duplicate, "{id}");
        assert_eq!(outcome.message.message_id, *id);
        assert!(outcome.local_conversation_id.is_some() && outcome.link_id.is_some());
        assert!(visible, "{id} visible to reads once answered");
    }
    store.flush().unwrap();
    let counts = store.counts().unwrap();
    assert_eq!(counts.messages as usize, threads * per_thread);
    assert_eq!(counts.conversations as usize, threads);
    let (links, _) = store.links(&LinkFilter::default(), ALL).unwrap();
    assert_eq!(links.len(), threads, "one link per conversation (one tab, one client)");
    assert_eq!(store.system_state().unwrap().automation_state, AutomationState::Paused);
    handle.shutdown();

    // Everything answered is on disk: reopen and count again.
    let (handle, store) = open(&dir, None);
    assert_eq!(store.counts().unwrap().messages as usize, threads * per_thread);
    handle.shutdown();
}

#[test]
fn a_failing_write_is_rolled_back_alone_and_reported_to_its_caller() {
    let dir = TempDir::new("store");
    let (handle, store) = open(&dir, None);
    // A fixture trigger makes the last step of one ingest (the link insert)
    // fail, after its message and conversation rows were written.
    support::exec_sql(
        store.path(),
        "CREATE TRIGGER poison BEFORE INSERT ON conversation_links
         WHEN NEW.remote_conversation_id = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END;",
    );
    let barrier = Arc::new(Barrier::new(17));
    let results = within_deadline("mixed batch", {
        let store = store.clone();
        move || {
            let workers: Vec<_> = (0..17)
                .map(|t| {
                    let store = store.clone();
                    let barrier = Arc::clone(&barrier);
                    thread::spawn(move || {
                        barrier.wait();
                        (0..10)
                            .map(|i| {
                                // Thread 0 sends only poisoned writes; the others good ones.
                                let (id, conv) = if t == 0 {
                                    (format!("bad-{i}"), "poison".to_string())
                                } else {
                                    (format!("good-{t}-{i}"), format!("conv-{t}"))
                                };
                                let r = store.ingest(msg(&id, &conv, "text"), SETTINGS);
                                (id, r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect::<Vec<_>>()
        }
    });
    for (id, r) in &results {
        if id.starts_with("bad-") {
            match r {
                Err(StoreError::Sqlite(m)) => assert!(m.contains("poisoned"), "{id}: {m}"),
                other => panic!("{id}: expected the trigger's error, got {other:?}"),
            }
            assert!(store.message(id).unwrap().is_none(), "{id}: message rolled back");
        } else {
            let outcome = r.as_ref().unwrap_or_else(|e| panic!("{id}: a neighbour's failure leaked: {e}"));
            assert!(!outcome.duplicate);
            assert!(store.message(id).unwrap().is_some(), "{id} committed");
        }
    }
    // Nothing half-written: no conversation, no link, no message for it.
    let counts = store.counts().unwrap();
    assert_eq!(counts.messages, 160);
    assert_eq!(counts.conversations, 16, "no conversation was created for the poisoned writes");
    assert_eq!(conversation_count_for(&store, "poison"), 0);
    let (msgs, _) = store
        .messages(&MessageFilter { conversation_id: Some("poison".into()), ..Default::default() }, ALL)
        .unwrap();
    assert!(msgs.is_empty());
    // The writer serves on.
    store.flush().unwrap();
    store.ingest(msg("after", "conv-after", "x"), SETTINGS).unwrap();
    assert!(store.message("after").unwrap().is_some());
    handle.shutdown();
}

#[test]
fn a_full_database_fails_the_write_cleanly_and_the_writer_lives_on() {
    let dir = TempDir::new("store");
    let (handle, store) = open(&dir, Some(64));
    let big = "x".repeat(40_000);
    let mut stored = Vec::new();
    let mut full_id = None;
    for i in 0..200 {
        let id = format!("big-{i}");
        match store.ingest(msg(&id, &format!("conv-{i}"), &big), SETTINGS) {
            Ok(outcome) => {
                assert!(!outcome.duplicate);
                stored.push(id);
            }
            Err(StoreError::Full) => {
                full_id = Some(id);
                break;
            }
            Err(other) => panic!("{id}: expected Full, got {other}"),
        }
    }
    let full_id = full_id.expect("the database never filled up");
    assert!(!stored.is_empty(), "some writes fit before the limit");

    // Nothing of the failed write remains.
    assert!(store.message(&full_id).unwrap().is_none());
    let counts = store.counts().unwrap();
    assert_eq!(counts.messages as usize, stored.len());
    assert_eq!(counts.conversations as usize, stored.len(), "no conversation for the failed write");
    let failed_conv = full_id.replace("big-", "conv-");
    assert_eq!(conversation_count_for(&store, &failed_conv), 0);

    // The writer is alive: a barrier and reads work, earlier data is intact.
    within_deadline("flush while full", {
        let store = store.clone();
        move || store.flush()
    })
    .expect("flush while full");
    for id in &stored {
        assert_eq!(store.message(id).unwrap().unwrap().raw_text.as_deref(), Some(big.as_str()));
    }
    // A duplicate needs no space and is still answered.
    let dup = store.ingest(msg(&stored[0], "conv-0", "other"), SETTINGS).unwrap();
    assert!(dup.duplicate);

    // While full, concurrent writes of any size either succeed (and are
    // stored in full) or fail with Full (and left nothing behind).
    let results = within_deadline("concurrent writes while full", {
        let store = store.clone();
        let big = big.clone();
        move || {
            let workers: Vec<_> = (0..8)
                .map(|t| {
                    let store = store.clone();
                    let big = big.clone();
                    thread::spawn(move || {
                        (0..6)
                            .map(|i| {
                                let id = format!("w{t}-{i}");
                                let text = if i % 2 == 0 { big.clone() } else { format!("small {id}") };
                                let r = store.ingest(msg(&id, &format!("cw{t}-{i}"), &text), SETTINGS);
                                (id, format!("cw{t}-{i}"), text, r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect::<Vec<_>>()
        }
    });
    let mut ok = 0;
    for (id, conv, text, r) in &results {
        match r {
            Ok(outcome) => {
                ok += 1;
                assert!(!outcome.duplicate);
                assert_eq!(
                    store.message(id).unwrap().and_then(|m| m.raw_text).as_deref(),
                    Some(text.as_str()),
                    "{id}"
                );
                assert_eq!(conversation_count_for(&store, conv), 1, "{id}");
            }
            Err(StoreError::Full) => {
                assert!(store.message(id).unwrap().is_none(), "{id} failed but was stored");
                assert_eq!(conversation_count_for(&store, conv), 0, "{id} failed but left a link");
            }
            Err(other) => panic!("{id}: expected Ok or Full, got {other}"),
        }
    }
    let counts = store.counts().unwrap();
    assert_eq!(counts.messages as usize, stored.len() + ok);
    assert_eq!(counts.conversations as usize, stored.len() + ok);
    store.flush().unwrap();
    handle.shutdown();

    // Without the limit the same database takes writes again, data intact.
    let (handle, store) = open(&dir, None);
    assert_eq!(store.counts().unwrap().messages as usize, stored.len() + ok);
    store.ingest(msg(&full_id, &failed_conv, &big), SETTINGS).unwrap();
    assert!(store.message(&full_id).unwrap().is_some());
    handle.shutdown();
}

#[test]
fn a_duplicate_ingest_is_idempotent() {
    let dir = TempDir::new("store");
    let (handle, store) = open(&dir, None);
    let first = store.ingest(msg("m1", "c1", "original"), SETTINGS).unwrap();
    assert!(!first.duplicate);
    let before = store.counts().unwrap();
    let conv_before = store.conversation(first.local_conversation_id.as_deref().unwrap()).unwrap().unwrap();

    let mut again = msg("m1", "c1", "changed text");
    again.tab_id = Some(99);
    again.observed_at = 5_000;
    for _ in 0..3 {
        let dup = store.ingest(again.clone(), SETTINGS).unwrap();
        assert!(dup.duplicate);
        assert!(!dup.automation_changed);
        assert_eq!(dup.local_conversation_id, first.local_conversation_id);
        assert_eq!(dup.link_id, first.link_id);
        assert_eq!(dup.message, first.message);
    }
    assert_eq!(store.counts().unwrap(), before);
    let conv_after = store.conversation(first.local_conversation_id.as_deref().unwrap()).unwrap().unwrap();
    assert_eq!(conv_after, conv_before, "the conversation is untouched by duplicates");
    let (links, _) = store.links(&LinkFilter::default(), ALL).unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(store.message("m1").unwrap().unwrap().raw_text.as_deref(), Some("original"));

    // Concurrent duplicates: exactly one is new.
    let results = within_deadline("concurrent duplicates", {
        let store = store.clone();
        move || {
            let workers: Vec<_> = (0..16)
                .map(|_| {
                    let store = store.clone();
                    thread::spawn(move || store.ingest(msg("m2", "c2", "race"), SETTINGS).unwrap())
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>()
        }
    });
    assert_eq!(results.iter().filter(|o| !o.duplicate).count(), 1);
    let lc: Vec<_> = results.iter().map(|o| o.local_conversation_id.clone()).collect();
    assert!(lc.windows(2).all(|w| w[0] == w[1]), "all answers name the same conversation");
    let (convs, _) = store.conversations(&ConversationFilter::default(), ALL).unwrap();
    assert_eq!(convs.len(), 2);
    handle.shutdown();
}

#[test]
fn shutdown_commits_what_is_queued_and_later_calls_see_closed() {
    let dir = TempDir::new("store");
    let (handle, store) = open(&dir, None);
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..20 {
                    store.ingest(msg(&format!("s{t}-{i}"), "c", "x"), SETTINGS).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    within_deadline("shutdown", move || handle.shutdown());
    assert_eq!(store.ingest(msg("late", "c", "x"), SETTINGS).unwrap_err(), StoreError::Closed);
    assert_eq!(store.flush().unwrap_err(), StoreError::Closed);
    drop(store);
    let (handle, store) = open(&dir, None);
    assert_eq!(store.counts().unwrap().messages, 160);
    assert!(store.message("late").unwrap().is_none());
    handle.shutdown();
}
