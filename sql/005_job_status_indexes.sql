-- Fewer index entries move when a job changes status. Every claim, finish
-- and recovery rewrote an entry in each index that starts with or contains
-- `status`; these two no longer do.
--
-- The dispatcher's due-job scan only ever looks at pending jobs
-- (`WHERE status = 'pending' AND next_attempt_at <= ?`). Indexing only
-- those rows means a job leaves this index once, when it is claimed, and
-- finished jobs never enter it, so it stays as small as the queue however
-- many finished jobs the table keeps. `status` stays the first column
-- although it is constant here: without it the planner (which runs without
-- statistics, see schema.rs) preferred `renewal_jobs_status_created` and
-- sorted every pending job.
DROP INDEX renewal_jobs_due;
CREATE INDEX renewal_jobs_due ON renewal_jobs (status, next_attempt_at, created_at)
    WHERE status = 'pending';

-- A conversation's jobs, newest first (the list filter). A conversation
-- has few jobs, so a status filter on top is checked row by row instead of
-- being kept in the index.
DROP INDEX renewal_jobs_conversation;
CREATE INDEX renewal_jobs_conversation ON renewal_jobs (local_conversation_id, created_at DESC, job_id DESC);
