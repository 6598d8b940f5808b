-- Rows built by ClickHouse from the raw events, and rollups exact by design. {db} is the
-- analytics database. See projections/clickhouse/README.md ("Ingest" and "Exactness").
--
-- 1. The writer inserts each event as published (its JSON, with its log position) into
--    `ingest`, a Null table: nothing is stored there, the materialized views below extract
--    the rows of events, turn_facts, metrics, usage and errors from each inserted block.
-- 2. Rollups a duplicate could inflate (errors_1m, latency_1m, usage_1m: sums and
--    histograms) become views that aggregate the deduplicated base tables (FINAL) at read
--    time: an event inserted twice, in a differently cut batch or at another offset,
--    collapses in its base table, keyed by the event, before anything sums it. The
--    distinct-count rollups (sessions_1m, turns_1m) stay tables: uniqExact states cannot
--    count an event twice.

-- Event ids are any non-empty string (CloudEvents 1.0; other producers use uuid4 or opaque
-- ids): a UUID column would refuse them.
ALTER TABLE {db}.events MODIFY COLUMN event_id String;

CREATE TABLE IF NOT EXISTS {db}.ingest
(
    topic                        LowCardinality(String),
    partition                    UInt32,
    offset                       UInt64,
    type                         LowCardinality(String),
    value                        String
)
ENGINE = Null;

-- events: the envelope, and `data` as the bytes it was published with (the text between
-- `,"data":` and the envelope's closing brace, as the codec writes it; anything else, e.g. a
-- producer that puts `data` elsewhere, falls back to ClickHouse's re-serialization).
-- Derived records (turn.completed, session.summarized) are not log events: no rows.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_events_mv TO {db}.events AS
WITH
    JSONExtract(value, 'Tuple(id String, time String, source String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String)))') AS e,
    position(value, ',"data":{') AS data_at,
    substring(value, data_at + 8, length(value) - data_at - 8) AS data_tail
SELECT
    e.id AS event_id,
    type,
    e.sessionid AS session_id,
    e.sequence AS sequence,
    e.data.turn_id AS turn_id,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.source AS source,
    e.subject AS room,
    if(data_at > 0 AND isValidJSON(data_tail), data_tail, JSONExtractRaw(value, 'data')) AS data
FROM {db}.ingest
WHERE type NOT IN ('turnlog.turn.completed.v1', 'turnlog.session.summarized.v1');

-- The typed views filter by type (sent with each event) before parsing any JSON, so each
-- parses only its own events.

-- turn_facts from transcripts: the text, whether final, the language.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_transcripts_mv TO {db}.turn_facts AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String), transcript String, is_final Bool, language Nullable(String)))') AS e
SELECT
    e.sessionid AS session_id,
    assumeNotNull(e.data.turn_id) AS turn_id,
    e.sequence AS sequence,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    type,
    '' AS role,
    e.data.transcript AS text,
    e.data.is_final AS is_final,
    e.data.language AS language
FROM (SELECT type, value FROM {db}.ingest WHERE type = 'turnlog.user.transcribed.v1')
WHERE e.data.turn_id IS NOT NULL;

-- turn_facts from user and assistant messages: timings and the models of the turn.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_messages_mv TO {db}.turn_facts AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String), item_id String, role String, text String, interrupted Bool, transcript_confidence Nullable(Float64), agent_id Nullable(String), metrics Tuple(started_speaking_at Nullable(String), stopped_speaking_at Nullable(String), transcription_delay Nullable(Float64), end_of_turn_delay Nullable(Float64), on_user_turn_completed_delay Nullable(Float64), llm_node_ttft Nullable(Float64), llm_node_ttfs Nullable(Float64), tts_node_ttfb Nullable(Float64), playback_latency Nullable(Float64), e2e_latency Nullable(Float64), stt Nullable(String), llm Nullable(String), tts Nullable(String))))') AS e,
    e.data.metrics AS m,
    -- a model is NULL (no provider, no model) when the message names none
    JSONExtract(ifNull(m.stt, 'null'), 'Tuple(provider Nullable(String), model Nullable(String))') AS stt,
    JSONExtract(ifNull(m.llm, 'null'), 'Tuple(provider Nullable(String), model Nullable(String))') AS llm,
    JSONExtract(ifNull(m.tts, 'null'), 'Tuple(provider Nullable(String), model Nullable(String))') AS tts
SELECT
    e.sessionid AS session_id,
    assumeNotNull(e.data.turn_id) AS turn_id,
    e.sequence AS sequence,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    type,
    e.data.role AS role,
    e.data.item_id AS item_id,
    e.data.text AS text,
    if(e.data.role = 'assistant', e.data.interrupted, NULL) AS interrupted,
    e.data.transcript_confidence AS transcript_confidence,
    e.data.agent_id AS agent_id,
    parseDateTime64BestEffortOrNull(m.started_speaking_at, 6, 'UTC') AS started_speaking_at,
    parseDateTime64BestEffortOrNull(m.stopped_speaking_at, 6, 'UTC') AS stopped_speaking_at,
    m.end_of_turn_delay AS end_of_turn_delay,
    m.transcription_delay AS transcription_delay,
    m.on_user_turn_completed_delay AS on_user_turn_completed_delay,
    m.llm_node_ttft AS llm_node_ttft,
    m.llm_node_ttfs AS llm_node_ttfs,
    m.tts_node_ttfb AS tts_node_ttfb,
    m.playback_latency AS playback_latency,
    m.e2e_latency AS e2e_latency,
    stt.provider AS stt_provider,
    stt.model AS stt_model,
    llm.provider AS llm_provider,
    llm.model AS llm_model,
    tts.provider AS tts_provider,
    tts.model AS tts_model
FROM (SELECT type, value FROM {db}.ingest WHERE type = 'turnlog.conversation.item_added.v1')
WHERE e.data.turn_id IS NOT NULL AND e.data.role IN ('user', 'assistant');

-- turn_facts from tool batches: the ids of the calls.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_tools_mv TO {db}.turn_facts AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String), calls Array(Tuple(call_id String))))') AS e
SELECT
    e.sessionid AS session_id,
    assumeNotNull(e.data.turn_id) AS turn_id,
    e.sequence AS sequence,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    type,
    '' AS role,
    arrayMap(c -> c.call_id, e.data.calls) AS tool_call_ids
FROM (SELECT type, value FROM {db}.ingest WHERE type = 'turnlog.tools.executed.v1')
WHERE e.data.turn_id IS NOT NULL AND notEmpty(e.data.calls);

-- metrics: one row per metrics.collected. Token counts normalized across kinds (LLM
-- prompt/completion become input/output, realtime cached tokens come from its details);
-- `fields` is every number and flag of the metrics, nested objects flattened with dots
-- (three levels: the deepest the catalog has).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_metrics_mv TO {db}.metrics AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String), metrics String))') AS e,
    e.data.metrics AS raw,
    JSONExtract(raw, 'Tuple(timestamp String, provider Nullable(String), model Nullable(String), kind String, label String, request_id String, speech_id Nullable(String), duration Nullable(Float64), ttft Nullable(Float64), ttfb Nullable(Float64), audio_duration Nullable(Float64), end_of_utterance_delay Nullable(Float64), transcription_delay Nullable(Float64), cancelled Nullable(Bool), prompt_tokens Int64, prompt_cached_tokens Int64, completion_tokens Int64, input_tokens Nullable(Int64), output_tokens Nullable(Int64), total_tokens Nullable(Int64), characters_count Int64, input_token_details Tuple(cached_tokens Int64))') AS m,
    multiIf(m.kind = 'llm', m.prompt_tokens, ifNull(m.input_tokens, 0)) AS inputs,
    multiIf(m.kind = 'llm', m.prompt_cached_tokens,
            m.kind = 'realtime_model', m.input_token_details.cached_tokens, 0) AS cached,
    multiIf(m.kind = 'llm', m.completion_tokens, ifNull(m.output_tokens, 0)) AS outputs,
    JSONExtractKeysAndValuesRaw(raw) AS level1,
    -- depth first, as the Python flattening orders them: an object's own fields, then
    -- those of its nested objects
    arrayFlatten(arrayMap(
        kv -> arrayConcat(
            arrayMap(x -> (concat(kv.1, '.', x.1), x.2), JSONExtractKeysAndValuesRaw(kv.2)),
            arrayFlatten(arrayMap(
                y -> arrayMap(z -> (concat(kv.1, '.', y.1, '.', z.1), z.2), JSONExtractKeysAndValuesRaw(y.2)),
                arrayFilter(y -> startsWith(y.2, '{'), JSONExtractKeysAndValuesRaw(kv.2))))),
        arrayFilter(kv -> startsWith(kv.2, '{'), level1))) AS nested
SELECT
    e.sessionid AS session_id,
    e.sequence AS sequence,
    e.data.turn_id AS turn_id,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    m.kind AS kind,
    ifNull(m.provider, '') AS provider,
    ifNull(m.model, '') AS model,
    m.label AS label,
    m.request_id AS request_id,
    m.speech_id AS speech_id,
    parseDateTime64BestEffort(m.timestamp, 6, 'UTC') AS measured_at,
    m.duration AS duration,
    if(m.ttft >= 0, m.ttft, NULL) AS ttft,
    m.ttfb AS ttfb,
    m.audio_duration AS audio_duration,
    m.end_of_utterance_delay AS end_of_utterance_delay,
    if(m.kind = 'eou', m.transcription_delay, NULL) AS transcription_delay,
    m.cancelled AS cancelled,
    inputs AS input_tokens,
    cached AS cached_input_tokens,
    outputs AS output_tokens,
    if(ifNull(m.total_tokens, 0) != 0, assumeNotNull(m.total_tokens), inputs + outputs) AS total_tokens,
    m.characters_count AS characters_count,
    CAST(arrayMap(kv -> (kv.1, if(kv.2 = 'true', 1., if(kv.2 = 'false', 0., toFloat64(kv.2)))),
                  arrayFilter(kv -> kv.2 IN ('true', 'false') OR match(kv.2, '^-?[0-9]'),
                              arrayConcat(level1, nested))),
         'Map(LowCardinality(String), Float64)') AS fields
FROM (SELECT value FROM {db}.ingest WHERE type = 'turnlog.metrics.collected.v1');

-- usage: one row per model of a usage.updated (cumulative totals; the table keeps the
-- latest by sequence).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_usage_mv TO {db}.usage AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(model_usage Array(String)))') AS e,
    arrayJoin(e.data.model_usage) AS raw,
    JSONExtract(raw, 'Tuple(kind String, provider String, model String, input_tokens Int64, input_cached_tokens Int64, output_tokens Int64, characters_count Int64, audio_duration Float64, session_duration Float64, total_requests Int64)') AS u,
    JSONExtractKeysAndValuesRaw(raw) AS level1,
    arrayFlatten(arrayMap(kv -> arrayMap(x -> (concat(kv.1, '.', x.1), x.2), JSONExtractKeysAndValuesRaw(kv.2)),
                          arrayFilter(kv -> startsWith(kv.2, '{'), level1))) AS level2
SELECT
    e.sessionid AS session_id,
    u.kind AS kind,
    u.provider AS provider,
    u.model AS model,
    e.sequence AS sequence,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    u.input_tokens AS input_tokens,
    u.input_cached_tokens AS cached_input_tokens,
    u.output_tokens AS output_tokens,
    u.characters_count AS characters_count,
    u.audio_duration AS audio_duration,
    u.session_duration AS session_duration,
    u.total_requests AS requests,
    CAST(arrayMap(kv -> (kv.1, if(kv.2 = 'true', 1., if(kv.2 = 'false', 0., toFloat64(kv.2)))),
                  arrayFilter(kv -> kv.2 IN ('true', 'false') OR match(kv.2, '^-?[0-9]'),
                              arrayConcat(level1, level2))),
         'Map(LowCardinality(String), Float64)') AS fields
FROM (SELECT value FROM {db}.ingest WHERE type = 'turnlog.usage.updated.v1');

-- errors: one row per error event.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.ingest_errors_mv TO {db}.errors AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String), error Tuple(source String, message String, recoverable Bool, error_type Nullable(String), label Nullable(String), provider Nullable(String), model Nullable(String), status_code Nullable(Int64))))') AS e,
    e.data.error AS x
SELECT
    e.sessionid AS session_id,
    e.sequence AS sequence,
    e.data.turn_id AS turn_id,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    x.source AS source,
    ifNull(x.provider, '') AS provider,
    ifNull(x.model, '') AS model,
    ifNull(x.error_type, '') AS error_type,
    ifNull(x.label, '') AS label,
    x.message AS message,
    x.recoverable AS recoverable,
    x.status_code AS status_code
FROM (SELECT value FROM {db}.ingest WHERE type = 'turnlog.error.v1');

-- The rollups that sum: views over the base tables read FINAL, so each event counts once
-- however often it was inserted. Same columns and aggregate types as the tables they
-- replace, so queries (quantilesTimingMerge, sum) read them unchanged.
DROP TABLE IF EXISTS {db}.errors_1m_mv;
DROP TABLE IF EXISTS {db}.errors_1m;
CREATE VIEW {db}.errors_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    source,
    provider,
    toUInt64(count()) AS errors,
    toUInt64(countIf(NOT recoverable)) AS unrecoverable
FROM {db}.errors FINAL
GROUP BY minute, source, provider;

DROP TABLE IF EXISTS {db}.latency_1m_mv;
DROP TABLE IF EXISTS {db}.latency_1m;
CREATE VIEW {db}.latency_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    sample.1 AS stage,
    sample.2 AS provider,
    sample.3 AS model,
    count() AS samples,
    sum(toUInt64(round(sample.4 * 1000000))) AS total_us,
    max(toUInt64(round(sample.4 * 1000000))) AS max_us,
    quantilesTimingState(0.5, 0.9, 0.99)(toUInt32(least(round(sample.4 * 1000), 30000))) AS quantiles_ms
FROM {db}.turn_facts FINAL
ARRAY JOIN arrayMap(
    s -> (s.1, s.2, s.3, assumeNotNull(s.4)),
    arrayFilter(s -> ifNull(s.4 >= 0, false), [
        ('eou', ifNull(stt_provider, ''), ifNull(stt_model, ''), end_of_turn_delay),
        ('stt', ifNull(stt_provider, ''), ifNull(stt_model, ''), transcription_delay),
        ('llm', ifNull(llm_provider, ''), ifNull(llm_model, ''), llm_node_ttft),
        ('tts', ifNull(tts_provider, ''), ifNull(tts_model, ''), tts_node_ttfb),
        ('e2e', ifNull(llm_provider, ''), ifNull(llm_model, ''), e2e_latency)
    ])
) AS sample
WHERE type = 'turnlog.conversation.item_added.v1'
GROUP BY minute, stage, provider, model;

DROP TABLE IF EXISTS {db}.usage_1m_mv;
DROP TABLE IF EXISTS {db}.usage_1m;
CREATE VIEW {db}.usage_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    kind,
    provider,
    model,
    toInt64(count()) AS requests,
    toInt64(countIf(ifNull(cancelled, false))) AS cancelled,
    sum(input_tokens) AS input_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(characters_count) AS characters,
    sum(toInt64(round(ifNull(audio_duration, 0) * 1000000))) AS audio_us
FROM {db}.metrics FINAL
WHERE kind IN ('stt', 'llm', 'tts', 'realtime_model')
GROUP BY minute, kind, provider, model;
