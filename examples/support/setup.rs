//! Bulk set-up of a stopped daemon's database, shared by the benchmark
//! tools that fill one (`bench_fill`, `bench_renewal`): the schema must be
//! the daemon's own (it created it on a first start), the fill runs with
//! no journal and no syncs, and the file goes back to WAL mode with nothing
//! left to replay, as the daemon expects it. Included with `#[path]`, since
//! each example is a crate of its own.

use rusqlite::Connection;

/// Opens `db` for a fill; refuses a file without the daemon's schema.
pub fn open(db: &str) -> Result<Connection, String> {
    let conn = Connection::open(db).map_err(|e| format!("cannot open {db}: {e}"))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if version < 1 {
        return Err(format!(
            "{db} has no schema (user_version {version}); start the daemon on the state dir once first"
        ));
    }
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;")
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

/// Back to WAL like the daemon, and no journal left behind to replay.
pub fn finish(conn: Connection) -> Result<(), String> {
    let mode: String =
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| e.to_string())?;
    if mode != "wal" {
        return Err(format!("could not put the database back in WAL mode (got {mode})"));
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").map_err(|e| e.to_string())?;
    conn.close().map_err(|(_, e)| e.to_string())
}
