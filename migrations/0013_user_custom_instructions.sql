-- A user's custom instructions: the system prompt a new chat of theirs gets when its start gives
-- none (copied into the chat). A column of users, so it goes with the account; the queries that
-- authenticate a request select only `custom_instructions IS NOT NULL`, never the text (which
-- TOAST keeps out of line once it is long). Nullable without a default: no table rewrite.
ALTER TABLE users ADD COLUMN custom_instructions text
    CHECK (custom_instructions IS NULL OR char_length(custom_instructions) BETWEEN 1 AND 20000);
