"""Agents that use Turnlog, written as LiveKit users write them (run from the repository)."""
