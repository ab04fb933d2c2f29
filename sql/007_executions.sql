-- Instruction blocks (docs/BAA.md "What happens to a message"): one row per `baa` block of an
-- assistant message ingested live, keyed by its instruction id (a hash of
-- message id, block index and block text), so a block is recorded — and
-- run — at most once however often its message arrives.
--
-- CHECKs are chains of `=` rather than `IN (…)` lists: SQLite builds a
-- temporary b-tree for a list of three or more values on every insert and
-- update of the column (see 006).
CREATE TABLE executions (
    instruction_id        TEXT PRIMARY KEY,
    message_id            TEXT NOT NULL,
    local_conversation_id TEXT NOT NULL,
    block_index           INTEGER NOT NULL,
    target                TEXT,
    tool                  TEXT,
    params_kind           TEXT CHECK (params_kind = 'json' OR params_kind = 'text'),
    params                TEXT,
    status                TEXT NOT NULL CHECK (status = 'pending' OR status = 'running' OR status = 'succeeded'
                              OR status = 'failed' OR status = 'rejected' OR status = 'invalid'),
    summary               TEXT,
    result_json           TEXT,
    error                 TEXT,
    artifact_path         TEXT,
    started_at            INTEGER,
    finished_at           INTEGER,
    created_at            INTEGER NOT NULL
);
-- The worker's queue in ingest order (rowid), and recovery's running rows:
-- partial, so they hold only the few open rows however many finished ones
-- the table keeps.
CREATE INDEX executions_pending ON executions (status) WHERE status = 'pending';
CREATE INDEX executions_running ON executions (status) WHERE status = 'running';
-- A message's blocks in order (the reply, the projector's check, the filter).
CREATE INDEX executions_message ON executions (message_id, block_index);
-- The list route, newest first, with and without each filter.
CREATE INDEX executions_created ON executions (created_at DESC, instruction_id DESC);
CREATE INDEX executions_status_created ON executions (status, created_at DESC, instruction_id DESC);
CREATE INDEX executions_tool_created ON executions (tool, created_at DESC, instruction_id DESC);
CREATE INDEX executions_conversation ON executions (local_conversation_id, created_at DESC, instruction_id DESC);
