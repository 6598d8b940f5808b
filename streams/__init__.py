"""Turnlog stream processors (Faust): projections, derived topics, dead letters.

- `config`: `StreamsSettings` from `TURNLOG_*`, `load_streams_settings()`.
- `processor`: `BatchProcessor.process(records)`, the Faust-agnostic core (decode, both
  sinks, derived records, dead letters); `RawRecord` in, `BatchOutcome` out.
- `isolate`, `sinks`: retries and bisection, so a bad event never blocks the good ones.
- `derived`, `state`: `TurnCompleted` / `SessionSummarized` from read-model rows.
- `dlq`: dead letters as Kafka records with reason and source headers.
- `journal`: the ClickHouse write journal that closes the crash gap.
- `locks`: the PostgreSQL advisory lock key of writers and schema swaps.
- `metrics`: Prometheus metrics; `startup`, `runtime`, `app`, `agents`, `cli`: the worker.
"""
