-- A reasoning model's thinking, streamed before (or while) it answers: kept with its reply to
-- show it again, never sent back as context. Empty for every other reply (a constant default:
-- no table rewrite).
ALTER TABLE messages ADD COLUMN reasoning text NOT NULL DEFAULT '';
