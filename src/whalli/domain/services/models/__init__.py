"""Model catalog use cases."""
