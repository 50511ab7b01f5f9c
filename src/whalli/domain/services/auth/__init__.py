"""Accounts and sessions: sign-up, sign-in, token rotation, sign-out, request authentication."""
