-- Redaction, as analysts may see it: a producer that redacts personal text before sealing
-- it (card numbers, e-mail addresses, phone numbers...) writes how many findings it
-- removed in the envelope's `redactions` extension. One row per such event; the text that
-- was removed is nowhere. {db} is the analytics database.
CREATE TABLE IF NOT EXISTS {db}.redactions
(
    session_id                   String,
    sequence                     UInt64,
    event_id                     String,
    type                         LowCardinality(String),
    time                         DateTime64(6, 'UTC'),
    count                        UInt32
)
ENGINE = ReplacingMergeTree
ORDER BY (session_id, sequence);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_redactions_mv TO {db}.redactions AS
WITH
    JSONExtract(value, 'Tuple(id String, time String, sessionid String, sequence UInt64, redactions Nullable(UInt32))') AS e
SELECT
    e.sessionid AS session_id,
    e.sequence AS sequence,
    e.id AS event_id,
    type,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    assumeNotNull(e.redactions) AS count
FROM {db}.ingest
WHERE e.redactions IS NOT NULL
  AND type NOT IN ('turnlog.turn.completed.v1', 'turnlog.session.summarized.v1');
