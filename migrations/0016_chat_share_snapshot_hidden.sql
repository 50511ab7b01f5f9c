-- 0015 copied every message a link's ids named. Links made by the first version of share links
-- named a failed reply with no text too, which the read path hid (it would show as an empty
-- answer): leave those out of the copies as well, as new links do.
UPDATE chat_shares
SET messages = coalesce((
    SELECT jsonb_agg(e ORDER BY n)
    FROM jsonb_array_elements(messages) WITH ORDINALITY AS x (e, n)
    WHERE NOT (e ->> 'status' = 'failed' AND e ->> 'content' = '')
), '[]'::jsonb)
WHERE messages @> '[{"status": "failed", "content": ""}]';
