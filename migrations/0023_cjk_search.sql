-- Chat search in languages written without spaces between words (Chinese, Japanese; Korean
-- attaches particles to its words). The 'simple' parser took a whole run of such characters as
-- one word, so a word inside a sentence was never found. Each of these characters is now a word
-- of its own in the index (whalli_search_words spaces them out), and the search asks for a run
-- of them as a phrase (adjacent, in order: PostgresChatSearch), which finds it anywhere.
-- The characters: Hiragana and Katakana (U+3040-30FF), CJK ideographs (Extension A
-- U+3400-4DBF, unified U+4E00-9FFF, compatibility U+F900-FAFF) and Hangul syllables
-- (U+AC00-D7AF).
-- The two generated columns are made again: this rewrites messages and chats once.
CREATE FUNCTION whalli_search_words(t text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT regexp_replace(t, '([぀-ヿ㐀-䶿一-鿿豈-﫿가-힯])', ' \1 ', 'g') $$;

ALTER TABLE messages DROP COLUMN content_tsv;
ALTER TABLE messages ADD COLUMN content_tsv tsvector GENERATED ALWAYS AS
    (to_tsvector('simple'::regconfig, whalli_search_words(left(content, 100000)))) STORED;
CREATE INDEX messages_content_tsv_idx ON messages USING gin (content_tsv);

ALTER TABLE chats DROP COLUMN title_tsv;
ALTER TABLE chats ADD COLUMN title_tsv tsvector GENERATED ALWAYS AS
    (setweight(to_tsvector('simple'::regconfig, whalli_search_words(left(title, 10000))), 'A'))
    STORED;
CREATE INDEX chats_title_tsv_idx ON chats USING gin (title_tsv);
