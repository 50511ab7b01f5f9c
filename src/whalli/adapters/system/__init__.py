"""Adapters over the operating system (wall clock)."""
