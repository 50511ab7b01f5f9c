-- Of a reply's (and of a usage record's) completion tokens, those the model spent on hidden
-- reasoning (TokenUsage.reasoning_tokens: the reasoning_tokens of OpenAI's wire format, when
-- the provider reports them), kept so a chat and /api/usage can show them.
-- Earlier rows: none known, 0.
ALTER TABLE messages ADD COLUMN reasoning_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_records ADD COLUMN reasoning_tokens bigint NOT NULL DEFAULT 0;
