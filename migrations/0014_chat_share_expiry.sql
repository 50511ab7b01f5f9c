-- A shared link may expire: from expires_at on it opens nothing, as if revoked. NULL (every
-- link made before this migration): it lasts until revoked.
ALTER TABLE chat_shares ADD COLUMN expires_at timestamptz;
ALTER TABLE chat_shares
    ADD CONSTRAINT chat_shares_expiry_after_creation CHECK (expires_at > created_at);
