-- Pinned and archived chats. Both are times (when, for a later "pinned first" order), NULL when
-- not; changing them does not move the chat in its project's newest-first list (updated_at).
-- Archiving unpins: a chat is never both.
ALTER TABLE chats
    ADD COLUMN pinned_at timestamptz,
    ADD COLUMN archived_at timestamptz,
    ADD CONSTRAINT chats_pinned_or_archived CHECK (pinned_at IS NULL OR archived_at IS NULL);
-- The default list leaves archived chats out: keyset pagination over the others.
CREATE INDEX chats_project_recent_active_idx ON chats (project_id, updated_at DESC, id DESC)
    WHERE archived_at IS NULL;
