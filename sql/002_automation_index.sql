-- The state snapshot pushed to plugins lists every conversation that is not
-- manual; this partial index finds them without scanning the table.
CREATE INDEX local_conversations_automated ON local_conversations (automation_status)
    WHERE automation_status != 'manual';
