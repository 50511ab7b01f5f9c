"""Usage use cases: what a user's replies cost, per model and per day."""
