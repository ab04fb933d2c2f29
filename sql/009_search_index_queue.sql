-- The full-text index of 008 is written in batches instead of once per
-- message. FTS5 writes what it holds in memory to a new index segment at
-- every statement savepoint and every commit, and in a transaction of many
-- writes nearly every statement takes a savepoint: with the index written
-- by the insert trigger, each message became a segment of its own, merged
-- again and again (a fifth of the writer's time under ingest load). Now a
-- new or changed message only queues its seq here. The daemon's writer
-- indexes the queue in the transaction that fills a batch, a search indexes
-- whatever is queued before it runs (so it never misses an acknowledged
-- message), and the store indexes the queue when it opens (rows other
-- tools wrote) and when it stops (src/store/search.rs). A message deleted
-- or changed while still queued was never indexed: its queue entry goes
-- instead of an index 'delete', which FTS5 requires to name exactly what
-- the index holds.
-- WITHOUT ROWID, so that a NULL seq is a NOT NULL violation, which
-- INSERT OR IGNORE skips, rather than a new rowid.
CREATE TABLE messages_fts_queue (seq INTEGER PRIMARY KEY NOT NULL) WITHOUT ROWID;
DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN NEW.seq IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO messages_fts_queue (seq) VALUES (NEW.seq);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN OLD.seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, raw_text)
        SELECT 'delete', OLD.seq, OLD.raw_text
        WHERE NOT EXISTS (SELECT 1 FROM messages_fts_queue WHERE seq = OLD.seq);
    DELETE FROM messages_fts_queue WHERE seq = OLD.seq;
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF seq, raw_text ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, raw_text)
        SELECT 'delete', OLD.seq, OLD.raw_text
        WHERE OLD.seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM messages_fts_queue WHERE seq = OLD.seq);
    DELETE FROM messages_fts_queue WHERE seq = OLD.seq;
    INSERT OR IGNORE INTO messages_fts_queue (seq) VALUES (NEW.seq);
END;
