"""Use cases of recurring web searches: subscriptions, their results, the scheduler and the run."""
