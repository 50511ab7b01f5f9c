-- A recurring search's last_run_at was written when the scheduler claimed its run, so a run then
-- skipped (the search paused or deleted meanwhile, no provider configured, the job lost) still
-- read as done. The claim now writes claimed_at (the scheduled run the next one counts from: an
-- interval change counts from it, so a claimed run still queued is never claimed again) and the
-- run itself, once the provider answered and its results are stored, writes last_run_at.
--
-- A run that failed (the provider refused it, or kept failing through the queue's retries) keeps
-- last_run_at and records a short reason (never the provider's answer nor the request) in
-- last_error with its time in last_error_at; the next run that succeeds clears both.
--
-- Rows claimed before this: their claim time is what last_run_at holds. claimed_at takes it;
-- last_run_at stays (which of those claims ran is not known). Adding nullable columns without a
-- default changes the catalog only; the UPDATE rewrites the rows that have run (one per search).
ALTER TABLE search_subscriptions
    ADD COLUMN claimed_at    timestamptz,
    ADD COLUMN last_error    text,
    ADD COLUMN last_error_at timestamptz;
UPDATE search_subscriptions SET claimed_at = last_run_at WHERE last_run_at IS NOT NULL;
