//! Checkpoints run beside the writer (src/store/checkpoint.rs): under a
//! steady stream of commits far longer than the checkpoint threshold, the
//! WAL still starts over and stays bounded, every acknowledged write is in
//! the database as another connection sees it, and at shutdown the writer's
//! connection closes last, so the WAL is checkpointed and removed.

mod support;

use std::thread;

use baa_conductor::store::{self, IngestSettings, NewMessage, StoreOptions};
use rusqlite::{Connection, OpenFlags};
use support::TempDir;

const SETTINGS: IngestSettings = IngestSettings { summary_limit: 200, repeat_pause_threshold: 3, baa: None };
const CLIENTS: usize = 8;
const PER_CLIENT: usize = 300;
/// Large enough that each message spills into several overflow pages: the
/// load writes far more WAL frames than the bound below.
const TEXT_BYTES: usize = 16 * 1024;
/// A WAL frame: a 24-byte header and a 4096-byte page.
const FRAME_BYTES: u64 = 24 + 4096;
/// The checkpoint module's hard bound (4 × 4000 frames) plus the frames of
/// one large batch of these messages; nothing near the ~30k frames the load
/// writes without checkpoints.
const MAX_WAL_FRAMES: u64 = 4 * 4000 + 2000;

fn msg(client: usize, i: usize) -> NewMessage {
    let conversation = format!("conv-{client}-{}", i % 4);
    NewMessage {
        platform: "chatgpt".into(),
        conversation_id: conversation.clone(),
        message_id: format!("m-{client}-{i:05}"),
        role: "assistant".into(),
        text: format!("{client} {i} {}", "x".repeat(TEXT_BYTES)),
        observed_at: 1_000 + i as i64,
        page_url: Some(format!("https://chatgpt.com/c/{conversation}")),
        page_title: Some("Title".into()),
        tab_id: Some(client as i64),
        route: None,
        organization_id: None,
        shell_page: false,
        client_id: Some("ff-1".into()),
    }
}

#[test]
fn the_wal_stays_bounded_under_steady_commits_and_nothing_is_lost() {
    let dir = TempDir::new("ckpt");
    let (handle, store) =
        store::open(dir.path(), StoreOptions { readers: 1, max_page_count: None }).expect("open");
    let wal = dir.path().join("conductor.db-wal");

    let writers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    store.ingest(msg(c, i), SETTINGS).expect("ingest");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer client");
    }
    // SQLite never shrinks the WAL file when it starts over, so its size now
    // is the largest the WAL ever was.
    let wal_frames = std::fs::metadata(&wal).expect("WAL exists while open").len() / FRAME_BYTES;
    assert!(wal_frames <= MAX_WAL_FRAMES, "WAL grew to {wal_frames} frames");

    let db = dir.path().join("conductor.db");
    let count = |conn: &Connection| {
        conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0)).unwrap()
    };
    let other = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    assert_eq!(count(&other), (CLIENTS * PER_CLIENT) as i64);
    drop(other);

    drop(store);
    handle.shutdown();
    assert!(!wal.exists(), "the writer's close checkpoints and removes the WAL");
    let after = Connection::open(&db).unwrap();
    assert_eq!(count(&after), (CLIENTS * PER_CLIENT) as i64);
    let integrity: String = after.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
}
