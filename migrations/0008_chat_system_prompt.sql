-- A chat's instructions: sent as the system message that opens every reply's prompt.
ALTER TABLE chats ADD COLUMN system_prompt text
    CHECK (system_prompt IS NULL OR char_length(system_prompt) BETWEEN 1 AND 20000);
