-- A shared link shows the title the chat had when the link was made: a later rename does not
-- show through. Links made before this migration keep their chat's title of now.
ALTER TABLE chat_shares ADD COLUMN title text;
UPDATE chat_shares s SET title = c.title FROM chats c WHERE c.id = s.chat_id;
ALTER TABLE chat_shares ALTER COLUMN title SET NOT NULL;
