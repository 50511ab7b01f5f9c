-- Whalli initial schema: the whole domain model.
-- Ids are app-generated UUIDs; every time is a timestamptz. Children that cannot outlive their
-- parent are removed with it (ON DELETE CASCADE); a project's owner must be reassigned before the
-- user can be deleted (RESTRICT), so a shared project never disappears with one account.

CREATE TABLE users (
    id             uuid PRIMARY KEY,
    email          text NOT NULL,
    name           text NOT NULL DEFAULT '',
    password_hash  text,
    role           text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    plan           text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro', 'enterprise')),
    disabled       boolean NOT NULL DEFAULT false,
    email_verified boolean NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX users_admins_idx ON users (id) WHERE role = 'admin' AND NOT disabled;

CREATE TABLE projects (
    id         uuid PRIMARY KEY,
    name       text NOT NULL,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    personal   boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX projects_owner_idx ON projects (owner_id);

CREATE TABLE memberships (
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX memberships_user_idx ON memberships (user_id, project_id);

CREATE TABLE chats (
    id         uuid PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title      text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
-- Keyset pagination of a project's chats: newest first by (updated_at, id).
CREATE INDEX chats_project_recent_idx ON chats (project_id, updated_at DESC, id DESC);
CREATE INDEX chats_user_idx ON chats (user_id);

CREATE TABLE messages (
    id                uuid PRIMARY KEY,
    chat_id           uuid NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content           text NOT NULL,
    status            text NOT NULL
                      CHECK (status IN ('pending', 'streaming', 'complete', 'aborted', 'failed')),
    model             text,
    provider          text,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    -- double precision, not numeric: the domain keeps a float and must read back what it wrote
    cost_usd          double precision NOT NULL DEFAULT 0,
    cached            boolean NOT NULL DEFAULT false,
    finish_reason     text,
    ttft_ms           bigint,
    total_ms          bigint,
    attachment_ids    uuid[] NOT NULL DEFAULT '{}',
    error             text,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    -- For chat full-text search. 'simple' because chats are in any language; the prefix bound
    -- keeps one huge message under the tsvector size limit instead of failing its insert.
    content_tsv       tsvector GENERATED ALWAYS AS
                      (to_tsvector('simple'::regconfig, left(content, 100000))) STORED
);
CREATE INDEX messages_chat_created_idx ON messages (chat_id, created_at, id);
CREATE INDEX messages_content_tsv_idx ON messages USING gin (content_tsv);

CREATE TABLE attachments (
    id             uuid PRIMARY KEY,
    project_id     uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    object_key     text NOT NULL,
    filename       text NOT NULL,
    content_type   text NOT NULL,
    size_bytes     bigint NOT NULL,
    sha256         text NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    extraction     jsonb,
    failure_reason text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT attachments_object_key_key UNIQUE (object_key)
);
CREATE INDEX attachments_project_recent_idx ON attachments (project_id, created_at DESC, id DESC);
CREATE INDEX attachments_user_idx ON attachments (user_id);

CREATE TABLE transcriptions (
    id             uuid PRIMARY KEY,
    attachment_id  uuid NOT NULL REFERENCES attachments (id) ON DELETE CASCADE,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_id        uuid REFERENCES chats (id) ON DELETE CASCADE,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'processing', 'done', 'failed')),
    language       text,
    text           text,
    message_id     uuid REFERENCES messages (id) ON DELETE CASCADE,
    failure_reason text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX transcriptions_attachment_idx ON transcriptions (attachment_id);
CREATE INDEX transcriptions_user_idx ON transcriptions (user_id);
CREATE INDEX transcriptions_chat_idx ON transcriptions (chat_id) WHERE chat_id IS NOT NULL;
CREATE INDEX transcriptions_message_idx ON transcriptions (message_id) WHERE message_id IS NOT NULL;

CREATE TABLE search_subscriptions (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id       uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    query            text NOT NULL,
    interval_minutes integer NOT NULL,
    active           boolean NOT NULL DEFAULT true,
    notify_email     boolean NOT NULL DEFAULT true,
    last_run_at      timestamptz,
    next_run_at      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
-- The scheduler's query: active subscriptions due now, most overdue first.
CREATE INDEX search_subscriptions_due_idx ON search_subscriptions (next_run_at, id) WHERE active;
CREATE INDEX search_subscriptions_user_idx ON search_subscriptions (user_id);
CREATE INDEX search_subscriptions_project_idx ON search_subscriptions (project_id);

CREATE TABLE search_results (
    id              uuid PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES search_subscriptions (id) ON DELETE CASCADE,
    url             text NOT NULL,
    title           text NOT NULL,
    snippet         text NOT NULL DEFAULT '',
    fingerprint     text NOT NULL,
    found_at        timestamptz NOT NULL,
    CONSTRAINT search_results_subscription_fingerprint_key UNIQUE (subscription_id, fingerprint)
);
CREATE INDEX search_results_recent_idx ON search_results (subscription_id, found_at DESC, id DESC);

CREATE TABLE notifications (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL DEFAULT '',
    link       text,
    read_at    timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX notifications_user_recent_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_user_unread_idx ON notifications (user_id, created_at DESC, id DESC)
    WHERE read_at IS NULL;
