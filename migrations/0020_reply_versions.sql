-- Earlier versions of replies: a regeneration keeps the reply it replaces, out of the
-- conversation. `answers` is the user's message it answered (set on such versions only: the
-- conversation is the chat's messages WHERE answers IS NULL), `asked` that message's text when
-- it was answered (an edit may change it since), `superseded_at` when it was replaced.
ALTER TABLE messages
    ADD COLUMN answers uuid REFERENCES messages (id) ON DELETE CASCADE,
    ADD COLUMN asked text,
    ADD COLUMN superseded_at timestamptz,
    ADD CONSTRAINT messages_version_columns
        CHECK ((answers IS NULL) = (asked IS NULL) AND (answers IS NULL) = (superseded_at IS NULL));

CREATE INDEX messages_answers_idx ON messages (answers, created_at, id) WHERE answers IS NOT NULL;
