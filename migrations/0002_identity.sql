-- Identity: rotating refresh tokens, personal API keys, linked OAuth provider accounts, and an
-- index for the admin user listing. Secrets are never stored, only their SHA-256 (hex).

CREATE TABLE refresh_tokens (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- One family per login session; parent_id links each rotation to the token it replaced
    -- (no foreign key: the lineage is informational and must not block deletes).
    family_id  uuid NOT NULL,
    token_hash text NOT NULL,
    parent_id  uuid,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    revoked_at timestamptz,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name           text NOT NULL,
    key_hash       text NOT NULL,
    display_prefix text NOT NULL,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at DESC, id DESC);

CREATE TABLE oauth_identities (
    provider   text NOT NULL CHECK (provider IN ('github', 'google')),
    subject    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_identities_user_idx ON oauth_identities (user_id);

-- The admin user listing pages oldest first; searches are a plain ILIKE on email and name
-- (pg_trgm is not guaranteed to be installed). The lower(email) index serves prefix lookups.
CREATE INDEX users_created_idx ON users (created_at, id);
CREATE INDEX users_email_lower_idx ON users (lower(email) text_pattern_ops);
