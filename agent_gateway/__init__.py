"""Turnlog agent gateway: a LiveKit agent worker that records every lifecycle hook to Kafka."""
