"""Outgoing email (the ``EmailSender`` port)."""
