//! Opening SQLite connections and migrating the schema. The migrations are
//! the plain `.sql` files in `sql/`, embedded at build time and applied in
//! order under `PRAGMA user_version`, so the database always says which of
//! them it has seen and a newer daemon upgrades an older file in place.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// Every migration, in order; index + 1 is the `user_version` it leads to.
pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    ("001_init.sql", include_str!("../../sql/001_init.sql")),
    ("002_automation_index.sql", include_str!("../../sql/002_automation_index.sql")),
    ("003_pruning_index.sql", include_str!("../../sql/003_pruning_index.sql")),
    ("004_message_seq.sql", include_str!("../../sql/004_message_seq.sql")),
    ("005_job_status_indexes.sql", include_str!("../../sql/005_job_status_indexes.sql")),
    ("006_check_without_lists.sql", include_str!("../../sql/006_check_without_lists.sql")),
    ("007_executions.sql", include_str!("../../sql/007_executions.sql")),
    ("008_message_search.sql", include_str!("../../sql/008_message_search.sql")),
    ("009_search_index_queue.sql", include_str!("../../sql/009_search_index_queue.sql")),
];

/// The schema version this build expects.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits on a lock held by another before failing.
/// Only the writer writes, so this covers checkpoints and startup races.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The writer's page cache: 8 MiB (a negative `cache_size` is KiB).
pub(super) const WRITER_CACHE_KIB: i64 = -8192;

/// Prepared statements the writer keeps.
pub(super) const WRITER_STATEMENTS: usize = 128;

/// Opens the one write connection: WAL, and `synchronous = NORMAL`, which in
/// WAL mode makes every commit durable against a killed process (the commit
/// is in the OS before the writer answers) while an fsync happens only at
/// checkpoints. docs/DECISIONS.md explains the trade-off against power loss.
pub fn open_writer(path: &Path, max_page_count: Option<u64>) -> Result<Connection, StoreError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // Through the WAL-gathering VFS (walvfs.rs): the writer's commits go to
    // the WAL in a few large writes instead of two small ones per page.
    let conn = if super::walvfs::register() {
        Connection::open_with_flags_and_vfs(path, flags, super::walvfs::NAME)?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    stable_plans(&conn)?;
    // Before the first pragma that could write (journal_mode).
    refuse_newer(&conn)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Checkpoints run beside the writer, not inside its commits
    // (checkpoint.rs).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // SQLite's default 2 MB page cache is just under the pages one message
    // and its job touch beside a large jobs table (six indexes, the FTS
    // segments): past it every write re-read its pages from the OS, and the
    // writer spent 2.4 times the CPU (docs/DECISIONS.md, "Writer page cache").
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    // More than rusqlite's default 16 (docs/DECISIONS.md, "Writer
    // statement cache").
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    if let Some(pages) = max_page_count {
        // Used by tests to make the database "full" the way a full disk does.
        conn.pragma_update(None, "max_page_count", pages as i64)?;
    }
    Ok(conn)
}

/// Opens a read-only connection. It can never write, even by mistake, and
/// in WAL mode it reads the last committed state without blocking the writer.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    stable_plans(&conn)?;
    conn.pragma_update(None, "query_only", "ON")?;
    // Readers are many; the OS page cache holds the file anyway.
    conn.pragma_update(None, "cache_size", -1024)?;
    Ok(conn)
}

/// Turns on the query planner stability guarantee. Without it, the bundled
/// SQLite (built with STAT4) marks statements whose plan could depend on a
/// bound value as "re-prepare on rebind", and since the statement cache
/// clears bindings, such statements were re-prepared on every use (measured:
/// 10 µs instead of 3.6 µs for the conversation lookup of every ingest).
/// Our queries have one right plan each, so the first plan is kept.
fn stable_plans(conn: &Connection) -> Result<(), StoreError> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Applies every migration newer than the database's `user_version`, each in
/// its own transaction together with the version bump, so a crash mid-way
/// leaves the file at a well-defined version.
///
/// A migration that edits `sqlite_schema` directly (006) does not change
/// `schema_version` by itself; SQLite's procedure for such edits is to
/// increase it by one, so that every connection parses the schema again.
/// `migrate` does that for any migration that left it unchanged.
pub fn migrate(conn: &mut Connection) -> Result<i64, StoreError> {
    let current = refuse_newer(conn)?;
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        // Said before, not only after: a migration that rebuilds an index
        // over every message takes minutes on a large database, and the
        // daemon is not ready meanwhile.
        log::info!("store: applying migration {name} (schema version {version}); on a large database this can take a while");
        let tx = conn.transaction()?;
        let cookie: i64 = tx.query_row("PRAGMA schema_version", [], |row| row.get(0))?;
        tx.execute_batch(sql).map_err(|e| StoreError::Schema(format!("migration {name} failed: {e}")))?;
        if tx.query_row("PRAGMA schema_version", [], |row| row.get::<_, i64>(0))? == cookie {
            tx.pragma_update(None, "schema_version", cookie + 1)?;
        }
        check_migration(&tx, name)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        log::info!("store: applied migration {name} (schema version {version})");
    }
    Ok(SCHEMA_VERSION)
}

/// The database's schema version, or `TooNew` for one written by a newer
/// build: such a file is refused as it is, never half-migrated or changed.
fn refuse_newer(conn: &Connection) -> Result<i64, StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::TooNew(current));
    }
    Ok(current)
}

/// What a migration that edits table definitions as text must have done;
/// anything else rolls it back and the daemon does not start.
fn check_migration(conn: &Connection, name: &str) -> Result<(), StoreError> {
    if name != "006_check_without_lists.sql" {
        return Ok(());
    }
    let left: i64 = conn.query_row(
        "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table'
         AND name IN ('local_conversations', 'renewal_jobs') AND sql LIKE '%CHECK (%IN (%'",
        [],
        |row| row.get(0),
    )?;
    if left > 0 {
        return Err(StoreError::Schema(format!("migration {name} did not rewrite every CHECK list")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's page cache is its own size, not SQLite's 2 MB default
    /// (the readers keep 1 MB each).
    #[test]
    fn the_writer_keeps_an_eight_megabyte_page_cache() {
        let (_dir, path) = temp_database();
        let pragma =
            |conn: &Connection| conn.query_row("PRAGMA cache_size", [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(pragma(&open_writer(&path, None).unwrap()), -8192);
        assert_eq!(pragma(&open_reader(&path).unwrap()), -1024);
    }

    /// A fresh temporary directory and the path of a database in it.
    fn temp_database() -> (super::super::test_dir::TestDir, std::path::PathBuf) {
        let dir = super::super::test_dir::TestDir::new("upgrade");
        let path = dir.path().join("old.db");
        (dir, path)
    }

    /// A database as a build with schema `version` left it: the first
    /// `version` migrations applied, `user_version` set.
    fn database_at_version(path: &Path, version: usize) -> Connection {
        let conn = open_writer(path, None).unwrap();
        for (_, sql) in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64).unwrap();
        conn
    }

    /// A database made by an older build (schema 4) with a pending and a
    /// done job upgrades in place: the rows stay, the new indexes exist,
    /// and the due scan finds the pending job through the new index.
    #[test]
    fn a_schema_4_database_upgrades_with_its_jobs() {
        let (_dir, path) = temp_database();
        {
            let conn = database_at_version(&path, 4);
            for (id, status, due) in [("job_a", "pending", Some(5)), ("job_b", "done", None)] {
                conn.execute(
                    "INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                        max_attempts, next_attempt_at, created_at, updated_at)
                     VALUES (?1, 'lc_1', ?1, ?2, 'x', 'text', 3, ?3, 1, 1)",
                    rusqlite::params![id, status, due],
                )
                .unwrap();
            }
        }
        let mut conn = open_writer(&path, None).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let jobs: i64 = conn.query_row("SELECT COUNT(*) FROM renewal_jobs", [], |r| r.get(0)).unwrap();
        assert_eq!(jobs, 2);
        let due: Vec<String> = conn
            .prepare("SELECT job_id FROM renewal_jobs INDEXED BY renewal_jobs_due WHERE status = 'pending' AND next_attempt_at <= 10")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(due, vec!["job_a".to_string()]);
        let index_sql: String = conn
            .query_row("SELECT sql FROM sqlite_schema WHERE name = 'renewal_jobs_conversation'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(!index_sql.contains("status"), "{index_sql}");
        drop(conn);
    }

    /// Schema 6 rewrites the CHECKs of two tables in place. A schema-5
    /// database keeps every row, the links that point at its conversations
    /// stay valid, and the constraints still refuse what they refused
    /// before (checked on a fresh connection too, which parses the schema
    /// from the file).
    #[test]
    fn a_schema_5_database_keeps_its_conversations_links_and_jobs() {
        let (_dir, path) = temp_database();
        {
            let conn = database_at_version(&path, 5);
            conn.execute_batch(
                "INSERT INTO local_conversations (local_conversation_id, platform, automation_status, execution_state,
                    summary, created_at, updated_at) VALUES ('lc_1', 'chatgpt', 'auto', 'renewal_running', 'hi', 1, 2);
                 INSERT INTO conversation_links (link_id, local_conversation_id, platform, remote_conversation_id,
                    is_active, observed_at, created_at, updated_at) VALUES ('link_1', 'lc_1', 'chatgpt', 'c1', 1, 1, 1, 1);
                 INSERT INTO renewal_jobs (job_id, local_conversation_id, message_id, status, payload, payload_kind,
                    max_attempts, next_attempt_at, created_at, updated_at)
                    VALUES ('job_1', 'lc_1', 'm1', 'running', 'x', 'json', 3, 5, 1, 1);",
            )
            .unwrap();
        }
        let mut conn = open_writer(&path, None).unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), SCHEMA_VERSION);
        let row: (String, String, String) = conn
            .query_row(
                "SELECT automation_status, execution_state, summary FROM local_conversations",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(row, ("auto".into(), "renewal_running".into(), "hi".into()));
        let job: (String, String) = conn
            .query_row("SELECT status, payload_kind FROM renewal_jobs", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!(job, ("running".into(), "json".into()));
        // The link still points at its conversation, and the key is enforced.
        let orphan = conn.execute("DELETE FROM local_conversations WHERE local_conversation_id = 'lc_1'", []);
        assert!(orphan.is_err(), "deleting a linked conversation must fail");
        let refuses_bad_values = |conn: &Connection| {
            for bad in [
                "UPDATE local_conversations SET automation_status = 'sometimes'",
                "UPDATE local_conversations SET execution_state = 'busy'",
                "UPDATE local_conversations SET last_non_paused_automation_status = 'paused'",
                "UPDATE renewal_jobs SET status = 'stuck'",
                "UPDATE renewal_jobs SET payload_kind = 'xml'",
            ] {
                assert!(conn.execute(bad, []).is_err(), "{bad} must violate its CHECK");
            }
            conn.execute("UPDATE renewal_jobs SET status = 'done'", []).expect("an allowed value");
        };
        refuses_bad_values(&conn);
        drop(conn);
        let fresh = open_writer(&path, None).unwrap();
        refuses_bad_values(&fresh);
        let lists: i64 = fresh
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema
                 WHERE name IN ('local_conversations', 'renewal_jobs') AND sql LIKE '%CHECK (%IN (%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(lists, 0, "no CHECK list is left in either table");
        let check: String = fresh.query_row("PRAGMA quick_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok");
        drop(fresh);
    }
}
