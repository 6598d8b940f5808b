"""PostgreSQL conversation read models: sessions, participants, messages, tool calls and
the STT history of each turn, built from `turnlog.events`.

- `tables`: the read models' columns and the merge rule of each (order-independent).
- `rows`: pure functions from one event to its row operations (`row_ops`).
- `fold`: merges row operations by key with the tables' rules (pure).
- `statements`: the writer's SQL, rendered from `tables`.
- `writer`: `PostgresProjection.apply_batch`, one transaction per batch with its offsets.
- `memory`: `InMemoryProjection`, the same interface and rules without a database.
- `checksum`: an order-independent digest per read model (live vs rebuilt).
- `queries` and `models`: the API's read queries and their typed rows.
- `migrate`: the versioned migrations of `migrations/`.
"""
