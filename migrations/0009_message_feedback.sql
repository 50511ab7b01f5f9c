-- A reader's rating of an assistant reply (thumbs up or down, and an optional comment): one per
-- reply and user, gone with the reply (a regeneration replaces it) or the user.
CREATE TABLE message_feedback (
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    rating text NOT NULL CHECK (rating IN ('up', 'down')),
    comment text CHECK (comment IS NULL OR char_length(comment) BETWEEN 1 AND 2000),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE INDEX message_feedback_user_idx ON message_feedback (user_id);
