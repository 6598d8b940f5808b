"""Turnlog stream processors: one projection per consumer group, dead letters.

- `config`: `StreamsSettings` from `TURNLOG_*`, `load_streams_settings()`.
- `projector`: the contract of a projection (`Projector`, `DecodedBatch`, `Applied`).
- `engine`: `ProjectionEngine`, one projection's consumer (positions from the projector).
- `postgres_projector`, `clickhouse_projector`, `derived_projector`: the projections.
- `decoding`: raw records to a `DecodedBatch` (dead letters for what does not decode).
- `isolate`, `sinks`: quick retries and bisection, so a bad event never blocks the good ones.
- `dlq`, `delivery`: dead letters as Kafka records, and the producer that delivers them.
- `retry`: the one backoff policy (tenacity) for dependencies that are down.
- `locks`: the PostgreSQL advisory lock key of writers and schema swaps.
- `metrics`, `logfilter`, `startup`, `app`, `cli`: the worker process.
"""
