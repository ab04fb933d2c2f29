-- Initial schema: every table of docs/RENEWAL.md.
-- Applied once under PRAGMA user_version = 1; never edit a released migration,
-- add a new numbered file instead.

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    platform        TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    role            TEXT NOT NULL,
    raw_text        TEXT NOT NULL,
    summary         TEXT,
    page_url        TEXT,
    page_title      TEXT,
    tab_id          INTEGER,
    client_id       TEXT,
    organization_id TEXT,
    observed_at     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX messages_observed ON messages (observed_at, id);
CREATE INDEX messages_conversation ON messages (platform, conversation_id, observed_at);

CREATE TABLE local_conversations (
    local_conversation_id             TEXT PRIMARY KEY,
    platform                          TEXT NOT NULL,
    automation_status                 TEXT NOT NULL DEFAULT 'manual'
        CHECK (automation_status IN ('manual', 'auto', 'paused')),
    last_non_paused_automation_status TEXT NOT NULL DEFAULT 'manual'
        CHECK (last_non_paused_automation_status IN ('manual', 'auto')),
    pause_reason                      TEXT,
    last_error                        TEXT,
    execution_state                   TEXT NOT NULL DEFAULT 'idle'
        CHECK (execution_state IN ('idle', 'renewal_running', 'instruction_running')),
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
CREATE INDEX local_conversations_updated ON local_conversations (updated_at, local_conversation_id);
-- Conversations that are not idle are found at start (recovery) without a scan.
CREATE INDEX local_conversations_busy ON local_conversations (execution_state)
    WHERE execution_state != 'idle';

CREATE TABLE conversation_links (
    link_id                TEXT PRIMARY KEY,
    local_conversation_id  TEXT NOT NULL REFERENCES local_conversations (local_conversation_id),
    platform               TEXT NOT NULL,
    client_id              TEXT,
    remote_conversation_id TEXT NOT NULL,
    page_url               TEXT,
    page_title             TEXT,
    route_path             TEXT,
    route_pattern          TEXT,
    route_params           TEXT,
    target_kind            TEXT,
    target_id              TEXT,
    target_payload         TEXT,
    is_active              INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    observed_at            INTEGER NOT NULL,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL
);
-- One row per (conversation, client, target); NULLs folded so the key is total.
CREATE UNIQUE INDEX conversation_links_identity
    ON conversation_links (local_conversation_id, IFNULL(client_id, ''), IFNULL(target_id, ''));
-- At most one active link per local conversation, enforced by the database.
CREATE UNIQUE INDEX conversation_links_one_active
    ON conversation_links (local_conversation_id) WHERE is_active = 1;
CREATE INDEX conversation_links_remote ON conversation_links (platform, remote_conversation_id);
CREATE INDEX conversation_links_observed ON conversation_links (observed_at, link_id);

CREATE TABLE renewal_jobs (
    job_id                TEXT PRIMARY KEY,
    local_conversation_id TEXT NOT NULL,
    message_id            TEXT NOT NULL UNIQUE,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    payload               TEXT NOT NULL,
    payload_kind          TEXT NOT NULL CHECK (payload_kind IN ('text', 'json')),
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
CREATE INDEX renewal_jobs_due ON renewal_jobs (status, next_attempt_at, created_at);
CREATE INDEX renewal_jobs_conversation ON renewal_jobs (local_conversation_id, status, created_at DESC);
-- The list routes page newest first, with and without a status filter.
CREATE INDEX renewal_jobs_status_created ON renewal_jobs (status, created_at DESC, job_id DESC);
CREATE INDEX renewal_jobs_created ON renewal_jobs (created_at DESC, job_id DESC);

CREATE TABLE browser_request_policy_state (
    state_key  TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE kv (
    key        TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
