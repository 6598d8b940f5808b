"""Read models built from the event log: PostgreSQL conversations, ClickHouse analytics."""
