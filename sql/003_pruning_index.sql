-- The pruner deletes finished jobs by age in small batches; this index finds
-- the oldest finished ones without scanning the table.
CREATE INDEX renewal_jobs_finished ON renewal_jobs (status, finished_at)
    WHERE status IN ('done', 'failed');
