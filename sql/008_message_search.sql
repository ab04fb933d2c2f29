-- Full-text search over message text (GET /v1/messages?q=...): an FTS5 index
-- keyed by messages.seq (unique, and set on every row: the daemon sets it,
-- 004's trigger fills it for rows written by other tools) that reads the
-- text back from messages (external content), so the index holds the words
-- and not a second copy of every text. The triggers keep the index in the
-- transaction of every insert, delete and change of a message; the rebuild
-- at the end indexes the rows that exist when this migration runs.
CREATE VIRTUAL TABLE messages_fts USING fts5(
    raw_text,
    content = 'messages',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN NEW.seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (rowid, raw_text) VALUES (NEW.seq, NEW.raw_text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages WHEN OLD.seq IS NOT NULL
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, raw_text) VALUES ('delete', OLD.seq, OLD.raw_text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF seq, raw_text ON messages
BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, raw_text)
        SELECT 'delete', OLD.seq, OLD.raw_text WHERE OLD.seq IS NOT NULL;
    INSERT INTO messages_fts (rowid, raw_text) SELECT NEW.seq, NEW.raw_text WHERE NEW.seq IS NOT NULL;
END;
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
