-- Every event of the log, as it was published. {db} is the analytics database.
-- ReplacingMergeTree on (session_id, sequence): a replayed or retried event collapses
-- into one row; read with FINAL (or argMax) for exact counts before merges run.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id      UUID,
    type          LowCardinality(String),
    session_id    String,
    sequence      UInt64,
    turn_id       Nullable(String),
    time          DateTime64(6, 'UTC'),
    source        String,
    room          String,
    data          String CODEC(ZSTD(3)),
    ingested_at   DateTime64(6, 'UTC') DEFAULT now64(6),
    INDEX type_idx type TYPE set(256) GRANULARITY 4,
    INDEX turn_idx turn_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (session_id, sequence);
