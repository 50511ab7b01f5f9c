"""Chat use cases: start a chat, generate and stream its reply, stop it."""
