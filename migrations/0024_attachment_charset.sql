-- The charset that reads every byte of an uploaded text file ('utf-8' or 'utf-16'), told at
-- upload, which a download names in its Content-Type. NULL: not a text file, a text that is
-- neither throughout, or a file uploaded before this column (downloaded with no charset).
ALTER TABLE attachments ADD COLUMN charset text;
