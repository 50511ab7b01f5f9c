-- When the sweeper last queued an attachment's extraction again (NULL: only the upload queued
-- it). The sweeper queues an attachment again only when neither updated_at nor requeued_at is
-- recent, so a job merely waiting in a backlogged queue is not queued again at every run.
ALTER TABLE attachments ADD COLUMN requeued_at timestamptz;

CREATE INDEX attachments_unfinished_touched_idx
    ON attachments (status, (GREATEST(updated_at, requeued_at)))
    WHERE status IN ('pending', 'processing');
