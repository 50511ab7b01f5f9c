-- A shared link's snapshot becomes a copy of what it shows (role, text, model, time and status
-- of each message, in the chat's order) instead of the ids of those messages: later edits and
-- regenerations no longer show through, as the title already did not (0012). Links made before
-- this migration copy their messages as they are now; messages deleted since stay gone.
ALTER TABLE chat_shares ADD COLUMN messages jsonb;
UPDATE chat_shares s SET messages = coalesce((
    SELECT jsonb_agg(
        jsonb_build_object(
            'role', m.role, 'content', m.content, 'model', m.model,
            'created_at', m.created_at, 'status', m.status
        ) ORDER BY m.created_at, m.id
    )
    FROM messages m
    WHERE m.chat_id = s.chat_id AND m.id = ANY (s.message_ids)
), '[]'::jsonb);
ALTER TABLE chat_shares ALTER COLUMN messages SET NOT NULL;
ALTER TABLE chat_shares DROP COLUMN message_ids;
