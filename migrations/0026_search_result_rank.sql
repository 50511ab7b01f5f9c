-- The results of one run share one found_at; they were listed by id descending within it, which,
-- ids being time-ordered, put the provider's best result last. Each result now keeps its rank in
-- its run's answer (0: the best), and a run's results list best first.
--
-- Results stored before this have rank 0 (a constant default: the catalog only, no rewrite), so
-- they list as before: by id descending within their run. The index the page reads is replaced
-- by one in the new order.
ALTER TABLE search_results ADD COLUMN rank integer NOT NULL DEFAULT 0;
CREATE INDEX search_results_ranked_idx ON search_results (subscription_id, found_at DESC, rank, id DESC);
DROP INDEX search_results_recent_idx;
