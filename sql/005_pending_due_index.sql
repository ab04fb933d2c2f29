-- The dispatcher's due-job scan only ever looks at pending jobs
-- (`WHERE status = 'pending' AND next_attempt_at <= ?`). Indexing only
-- those rows means a job leaves this index once, when it is claimed, and
-- finished jobs never enter it: claiming and finishing a job no longer
-- rewrite an index entry each, and the index stays as small as the queue
-- however many finished jobs the table keeps.
DROP INDEX renewal_jobs_due;
-- `status` stays the first column although it is constant here: without
-- it the planner (which runs without statistics, see schema.rs) preferred
-- `renewal_jobs_status_created` and sorted every pending job.
CREATE INDEX renewal_jobs_due ON renewal_jobs (status, next_attempt_at, created_at)
    WHERE status = 'pending';
