-- Of a reply's (and of a usage record's) prompt tokens, those the provider read from its prompt
-- cache and those it wrote to it (TokenUsage.cached_prompt_tokens, cache_write_tokens): priced
-- apart from the rest of the prompt, and shown in usage. Earlier rows: none known, 0.
ALTER TABLE messages
    ADD COLUMN cached_prompt_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_records
    ADD COLUMN cached_prompt_tokens bigint NOT NULL DEFAULT 0,
    ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
