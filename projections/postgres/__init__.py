"""PostgreSQL conversation read models: migrations, appliers, queries."""
