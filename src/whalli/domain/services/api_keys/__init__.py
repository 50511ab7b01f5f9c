"""Personal API key use cases: create (the secret is shown once), list and revoke one's own keys."""
