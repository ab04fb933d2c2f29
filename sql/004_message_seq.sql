-- Messages get an ingest sequence number: the projector's cursor follows it,
-- so a message is examined even when it arrives long after its observed_at
-- (a plugin flushing a queue, a skewed clock), which a cursor on
-- (observed_at, id) would have passed already. Existing rows keep their
-- insertion order (rowid).
ALTER TABLE messages ADD COLUMN seq INTEGER;
UPDATE messages SET seq = rowid;
CREATE UNIQUE INDEX messages_seq ON messages (seq);
-- The daemon's own inserts set seq; a row written by any other tool (an
-- import, a repair script) still gets the next number instead of NULL,
-- which the projector would never reach.
CREATE TRIGGER messages_seq_default AFTER INSERT ON messages WHEN NEW.seq IS NULL
BEGIN
    UPDATE messages SET seq = (SELECT IFNULL(MAX(seq), 0) + 1 FROM messages) WHERE rowid = NEW.rowid;
END;
