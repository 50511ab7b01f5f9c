"""Uploaded files: upload, list, read, download and delete, one module each; ``access`` holds
the rule that hides files the caller may not read. Text extraction lives in its own module."""
