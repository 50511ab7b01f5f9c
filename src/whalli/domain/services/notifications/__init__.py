"""Use cases of in-app notifications."""
