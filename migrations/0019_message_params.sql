-- The sampling parameters a reply was asked with (GenerationParams' set fields, a jsonb object;
-- empty for users' messages and replies asked with none): a regeneration asks again with them.
ALTER TABLE messages ADD COLUMN params jsonb NOT NULL DEFAULT '{}'::jsonb
    CHECK (jsonb_typeof(params) = 'object');
