-- The same CHECK constraints, written without value lists.
--
-- SQLite evaluates `x IN ('a', 'b', 'c')` (three or more constants) by
-- building a temporary b-tree of the values, and a CHECK runs on every
-- insert and on every update of its column. Claiming, finishing and
-- projecting a job each paid for one or two of those b-trees (a tenth of the
-- store writer's instructions per renewal job under callgrind). A chain of
-- `=` comparisons means exactly the same and costs nothing to set up.
--
-- SQLite cannot alter a CHECK in place, so both tables are rebuilt with the
-- documented procedure (https://sqlite.org/lang_altertable.html, "Making
-- Other Kinds Of Table Schema Changes"): new table, copy, drop, rename,
-- indexes again. `schema::migrate` turns foreign keys off around the
-- migrations and checks them before each commit, as that procedure asks.
-- Column order and every other constraint stay as they were.

CREATE TABLE local_conversations_new (
    local_conversation_id             TEXT PRIMARY KEY,
    platform                          TEXT NOT NULL,
    automation_status                 TEXT NOT NULL DEFAULT 'manual'
        CHECK (automation_status = 'manual' OR automation_status = 'auto' OR automation_status = 'paused'),
    last_non_paused_automation_status TEXT NOT NULL DEFAULT 'manual'
        CHECK (last_non_paused_automation_status = 'manual' OR last_non_paused_automation_status = 'auto'),
    pause_reason                      TEXT,
    last_error                        TEXT,
    execution_state                   TEXT NOT NULL DEFAULT 'idle'
        CHECK (execution_state = 'idle' OR execution_state = 'renewal_running'
            OR execution_state = 'instruction_running'),
    consecutive_failure_count         INTEGER NOT NULL DEFAULT 0,
    repeated_message_count            INTEGER NOT NULL DEFAULT 0,
    repeated_renewal_count            INTEGER NOT NULL DEFAULT 0,
    last_message_fingerprint          TEXT,
    last_renewal_fingerprint          TEXT,
    title                             TEXT,
    summary                           TEXT,
    last_message_id                   TEXT,
    last_message_at                   INTEGER,
    cooldown_until                    INTEGER,
    paused_at                         INTEGER,
    created_at                        INTEGER NOT NULL,
    updated_at                        INTEGER NOT NULL
);
INSERT INTO local_conversations_new SELECT
    local_conversation_id, platform, automation_status, last_non_paused_automation_status, pause_reason,
    last_error, execution_state, consecutive_failure_count, repeated_message_count, repeated_renewal_count,
    last_message_fingerprint, last_renewal_fingerprint, title, summary, last_message_id, last_message_at,
    cooldown_until, paused_at, created_at, updated_at
FROM local_conversations;
DROP TABLE local_conversations;
ALTER TABLE local_conversations_new RENAME TO local_conversations;
CREATE INDEX local_conversations_updated ON local_conversations (updated_at, local_conversation_id);
CREATE INDEX local_conversations_busy ON local_conversations (execution_state)
    WHERE execution_state != 'idle';
CREATE INDEX local_conversations_automated ON local_conversations (automation_status)
    WHERE automation_status != 'manual';

CREATE TABLE renewal_jobs_new (
    job_id                TEXT PRIMARY KEY,
    local_conversation_id TEXT NOT NULL,
    message_id            TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL
        CHECK (status = 'pending' OR status = 'running' OR status = 'done' OR status = 'failed'),
    payload               TEXT NOT NULL,
    payload_kind          TEXT NOT NULL CHECK (payload_kind = 'text' OR payload_kind = 'json'),
    target_snapshot       TEXT,
    attempt_count         INTEGER NOT NULL DEFAULT 0,
    max_attempts          INTEGER NOT NULL,
    next_attempt_at       INTEGER,
    last_attempt_at       INTEGER,
    last_error            TEXT,
    log_path              TEXT,
    started_at            INTEGER,
    finished_at           INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
INSERT INTO renewal_jobs_new SELECT
    job_id, local_conversation_id, message_id, status, payload, payload_kind, target_snapshot, attempt_count,
    max_attempts, next_attempt_at, last_attempt_at, last_error, log_path, started_at, finished_at, created_at,
    updated_at
FROM renewal_jobs;
DROP TABLE renewal_jobs;
ALTER TABLE renewal_jobs_new RENAME TO renewal_jobs;
-- The indexes in the order the earlier migrations created them: without
-- statistics the planner breaks ties between equally good indexes by that
-- order (the plan tests in src/store/read_tests.rs pin the outcome).
CREATE INDEX renewal_jobs_status_created ON renewal_jobs (status, created_at DESC, job_id DESC);
CREATE INDEX renewal_jobs_created ON renewal_jobs (created_at DESC, job_id DESC);
CREATE INDEX renewal_jobs_finished ON renewal_jobs (status, finished_at)
    WHERE status IN ('done', 'failed');
CREATE INDEX renewal_jobs_due ON renewal_jobs (status, next_attempt_at, created_at)
    WHERE status = 'pending';
CREATE INDEX renewal_jobs_conversation ON renewal_jobs (local_conversation_id, created_at DESC, job_id DESC);
