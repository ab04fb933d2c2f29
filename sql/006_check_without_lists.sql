-- The same CHECK constraints, written without value lists.
--
-- SQLite evaluates `x IN ('a', 'b', 'c')` (three or more constants) by
-- building a temporary b-tree of the values, and a CHECK runs on every
-- insert and on every update of its column. Claiming, finishing and
-- projecting a job each paid for one or two of those b-trees (a tenth of the
-- store writer's instructions per renewal job under callgrind). A chain of
-- `=` comparisons means exactly the same and costs nothing to set up.
--
-- SQLite cannot alter a CHECK with ALTER TABLE. Its documentation gives a
-- short procedure for removing or changing CHECK constraints, which do not
-- affect how rows are stored: edit the table's SQL in `sqlite_schema` under
-- `writable_schema`, then increase `schema_version` so that every
-- connection parses the schema again (`schema::migrate` does that after
-- every migration that did not change it itself). Unlike rebuilding the
-- table, this copies no rows: on a database with 1M jobs the rebuild took
-- 32 s at start and left the file twice its size with as much WAL again.
-- Every row already satisfies the new CHECKs, because they mean the same.
-- Each `replace` must match the text 001_init.sql created; `schema::migrate`
-- checks afterwards that no `IN (` list is left in either table.

PRAGMA writable_schema = ON;

UPDATE sqlite_schema SET sql = replace(replace(replace(sql,
    'CHECK (automation_status IN (''manual'', ''auto'', ''paused''))',
    'CHECK (automation_status = ''manual'' OR automation_status = ''auto'' OR automation_status = ''paused'')'),
    'CHECK (last_non_paused_automation_status IN (''manual'', ''auto''))',
    'CHECK (last_non_paused_automation_status = ''manual'' OR last_non_paused_automation_status = ''auto'')'),
    'CHECK (execution_state IN (''idle'', ''renewal_running'', ''instruction_running''))',
    'CHECK (execution_state = ''idle'' OR execution_state = ''renewal_running'' OR execution_state = ''instruction_running'')')
WHERE type = 'table' AND name = 'local_conversations';

UPDATE sqlite_schema SET sql = replace(replace(sql,
    'CHECK (status IN (''pending'', ''running'', ''done'', ''failed''))',
    'CHECK (status = ''pending'' OR status = ''running'' OR status = ''done'' OR status = ''failed'')'),
    'CHECK (payload_kind IN (''text'', ''json''))',
    'CHECK (payload_kind = ''text'' OR payload_kind = ''json'')')
WHERE type = 'table' AND name = 'renewal_jobs';

PRAGMA writable_schema = OFF;
