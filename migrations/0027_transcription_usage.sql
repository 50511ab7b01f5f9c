-- A transcription's usage record (model, provider, cost, and tokens for a model billed by tokens)
-- also says how many seconds of audio it transcribed (what whisper-1 is billed by), so that
-- /api/usage can show them. A chat reply's record: 0. Earlier rows: none known, 0.
ALTER TABLE usage_records ADD COLUMN audio_seconds double precision NOT NULL DEFAULT 0;
