"""The local stack launcher: Kafka, PostgreSQL and chDB on one machine, no Docker."""
