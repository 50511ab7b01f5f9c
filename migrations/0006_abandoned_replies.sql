-- The reply sweeper looks for assistant replies still pending or streaming long after they were
-- created (their generator died with its process), oldest first.
CREATE INDEX messages_unfinished_created_idx ON messages (created_at, id)
    WHERE status IN ('pending', 'streaming');
