-- Search reads every character a message may hold (MESSAGE_MAX: 200,000) where it read the first
-- 100,000 (0001, 0023): a word further into a long message was never found.
--
-- A tsvector holds at most 1 MB of words and positions; past it to_tsvector raises "string is too
-- long for tsvector", which would refuse the row. Text takes a few bytes of it per character,
-- contrived text up to 8 (tens of thousands of distinct hyphenated words of rare four-byte
-- letters: the word and each of its parts are kept), so 200,000 characters of such text may not
-- fit, while 100,000 always do. whalli_message_words therefore indexes the first 200,000
-- characters and, when they do not fit, the first 100,000 as before: a message is always saved.
-- Only a text over 100,000 characters enters the block that catches the error (a subtransaction).
--
-- What this costs on a big table: changing a generated column's expression (DROP and ADD as 0023
-- did, or SET EXPRESSION) rewrites the whole messages table and rebuilds every index on it under
-- an ACCESS EXCLUSIVE lock, minutes to hours without chats on a big table. Instead, content_tsv
-- becomes a plain column kept by a trigger, computed as its expression was from content, on every
-- insert and on every update that sets content (or content_tsv itself). DROP EXPRESSION changes
-- the catalog only: the stored values and the GIN index stay. Then only the messages whose text is
-- over 100,000 bytes are indexed again: finding them is one sequential read of the messages table
-- (octet_length takes a TOASTed text's size from its header, without reading the text: about
-- what SELECT count(*) FROM messages costs), and rewriting them costs what saving that many long
-- messages does. The lock the ALTER takes is held until the end: messages can be neither read nor
-- written during that read.
CREATE FUNCTION whalli_message_words(t text) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE STRICT
    AS $$
BEGIN
    IF length(t) <= 100000 THEN
        RETURN to_tsvector('simple'::regconfig, whalli_search_words(t));
    END IF;
    BEGIN
        RETURN to_tsvector('simple'::regconfig, whalli_search_words(left(t, 200000)));
    EXCEPTION WHEN program_limit_exceeded THEN  -- past the 1 MB a tsvector holds
        RETURN to_tsvector('simple'::regconfig, whalli_search_words(left(t, 100000)));
    END;
END
$$;

CREATE FUNCTION whalli_messages_content_tsv() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.content_tsv := whalli_message_words(NEW.content);
    RETURN NEW;
END
$$;

ALTER TABLE messages ALTER COLUMN content_tsv DROP EXPRESSION;
CREATE TRIGGER messages_content_tsv BEFORE INSERT OR UPDATE OF content, content_tsv ON messages
    FOR EACH ROW EXECUTE FUNCTION whalli_messages_content_tsv();

-- (setting content to itself has the trigger index each long message again)
UPDATE messages SET content = content WHERE octet_length(content) > 100000;
