-- The extraction sweeper looks for attachments still pending (or stuck in processing) by age.
CREATE INDEX attachments_unfinished_idx ON attachments (status, updated_at)
    WHERE status IN ('pending', 'processing');
