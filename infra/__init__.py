"""Local infrastructure: the stack launcher (Kafka, PostgreSQL, chDB) and service configs."""
