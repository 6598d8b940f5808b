"""Turnlog HTTP API: LiveKit tokens, read models, analytics."""
