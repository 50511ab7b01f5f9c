-- Public read-only links to a snapshot of a chat. Only the SHA-256 of a link's token is stored,
-- so a copy of the database opens no link. The snapshot is the list of the messages it shows
-- (those finished when it was made), not a cutoff time: a reply still being generated can have
-- the same created_at as the question it answers, and a regenerated reply replaces one.
-- A revoked link keeps its row (revoked_at); deleting the chat or its creator deletes its links.
CREATE TABLE chat_shares (
    id uuid PRIMARY KEY,
    chat_id uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    created_by uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash text NOT NULL UNIQUE,
    message_ids uuid[] NOT NULL,
    created_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX chat_shares_live_chat_idx ON chat_shares (chat_id) WHERE revoked_at IS NULL;
CREATE INDEX chat_shares_created_by_idx ON chat_shares (created_by);
