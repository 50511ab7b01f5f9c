-- Users' presets: a model with its instructions and sampling parameters, to start chats with.
-- Private to their user (deleted with the account). The model is a catalog id (checked by the
-- app when saved and when used: the catalog is not in the database); the parameters a jsonb
-- object of GenerationParams' fields.
CREATE TABLE presets (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 80),
    model         text NOT NULL CHECK (char_length(model) BETWEEN 1 AND 200),
    system_prompt text CHECK (system_prompt IS NULL OR char_length(system_prompt) BETWEEN 1 AND 20000),
    params        jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(params) = 'object'),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX presets_user_created_idx ON presets (user_id, created_at, id);
