-- Chat: usage records (tokens and cost per user and model; metrics now, quotas later) and the
-- full-text search of chat titles (messages.content_tsv from 0001 covers the messages).

CREATE TABLE usage_records (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Usage outlives the message it paid for: deleting a chat must not erase what was spent.
    message_id        uuid REFERENCES messages (id) ON DELETE SET NULL,
    model             text NOT NULL,
    provider          text NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    -- double precision, as messages.cost_usd: the domain keeps a float
    cost_usd          double precision NOT NULL,
    cached            boolean NOT NULL,
    created_at        timestamptz NOT NULL
);
-- Totals per user over a period, all models or one.
CREATE INDEX usage_records_user_created_idx ON usage_records (user_id, created_at);
CREATE INDEX usage_records_user_model_created_idx ON usage_records (user_id, model, created_at);
-- Deleting messages sets their usage's message_id to NULL; this keeps that from scanning the table.
CREATE INDEX usage_records_message_idx ON usage_records (message_id) WHERE message_id IS NOT NULL;

-- Titles weigh more than message text in the ranking (weight A against the messages' default D).
ALTER TABLE chats ADD COLUMN title_tsv tsvector GENERATED ALWAYS AS
    (setweight(to_tsvector('simple'::regconfig, left(title, 10000)), 'A')) STORED;
CREATE INDEX chats_title_tsv_idx ON chats USING gin (title_tsv);
