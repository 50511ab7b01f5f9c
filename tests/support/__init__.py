"""Test support: local servers speaking the wire protocols of external services."""
