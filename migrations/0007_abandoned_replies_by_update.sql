-- The reply sweeper now looks for assistant replies with no news (no progress checkpoint, no
-- final write) for a while, rather than old ones: index them by their last update.
DROP INDEX IF EXISTS messages_unfinished_created_idx;
CREATE INDEX messages_unfinished_updated_idx ON messages (updated_at, id)
    WHERE status IN ('pending', 'streaming');
