-- The ingest views, revised: {db} is the analytics database. 0003's views parsed every
-- event of a batch in each view; these filter by type first, and one view builds every
-- turn fact (one insert into turn_facts per batch instead of three, so its own views run
-- once). Dropped and created again: a view's SELECT cannot be altered in place.

DROP TABLE IF EXISTS {db}.ingest_transcripts_mv;
DROP TABLE IF EXISTS {db}.ingest_messages_mv;
DROP TABLE IF EXISTS {db}.ingest_tools_mv;
DROP TABLE IF EXISTS {db}.ingest_metrics_mv;
DROP TABLE IF EXISTS {db}.ingest_usage_mv;
DROP TABLE IF EXISTS {db}.ingest_errors_mv;

-- The typed views filter by type (sent with each event) before parsing any JSON, so each
-- parses only its own events.

-- turn_facts: one view for the three kinds of fact, so a batch is one insert into
-- turn_facts (and one run of the views that read it), whatever its mix of types.
-- Transcripts give the text, whether final, the language; user and assistant messages the
-- timings and the models of the turn; tool batches the ids of the calls.
DROP TABLE IF EXISTS {db}.ingest_turn_facts_mv;
CREATE MATERIALIZED VIEW {db}.ingest_turn_facts_mv TO {db}.turn_facts AS
WITH
    JSONExtract(value, 'Tuple(time String, subject String, sessionid String, sequence UInt64, data Tuple(turn_id Nullable(String), transcript String, is_final Bool, language Nullable(String), item_id Nullable(String), role String, text String, interrupted Bool, transcript_confidence Nullable(Float64), agent_id Nullable(String), metrics Tuple(started_speaking_at Nullable(String), stopped_speaking_at Nullable(String), transcription_delay Nullable(Float64), end_of_turn_delay Nullable(Float64), on_user_turn_completed_delay Nullable(Float64), llm_node_ttft Nullable(Float64), llm_node_ttfs Nullable(Float64), tts_node_ttfb Nullable(Float64), playback_latency Nullable(Float64), e2e_latency Nullable(Float64), stt Nullable(String), llm Nullable(String), tts Nullable(String)), calls Array(Tuple(call_id String))))') AS e,
    type = 'turnlog.conversation.item_added.v1' AS message,
    type = 'turnlog.user.transcribed.v1' AS transcript,
    e.data AS d,
    d.metrics AS m,
    -- a model is NULL (no provider, no model) when the message names none
    JSONExtract(ifNull(m.stt, 'null'), 'Tuple(provider Nullable(String), model Nullable(String))') AS stt,
    JSONExtract(ifNull(m.llm, 'null'), 'Tuple(provider Nullable(String), model Nullable(String))') AS llm,
    JSONExtract(ifNull(m.tts, 'null'), 'Tuple(provider Nullable(String), model Nullable(String))') AS tts
SELECT
    e.sessionid AS session_id,
    assumeNotNull(d.turn_id) AS turn_id,
    e.sequence AS sequence,
    parseDateTime64BestEffort(e.time, 6, 'UTC') AS time,
    e.subject AS room,
    type,
    if(message, d.role, '') AS role,
    if(message, d.item_id, NULL) AS item_id,
    multiIf(message, d.text, transcript, d.transcript, NULL) AS text,
    if(transcript, d.is_final, NULL) AS is_final,
    if(transcript, d.language, NULL) AS language,
    if(message, d.transcript_confidence, NULL) AS transcript_confidence,
    if(message, d.agent_id, NULL) AS agent_id,
    if(message AND d.role = 'assistant', d.interrupted, NULL) AS interrupted,
    if(message, parseDateTime64BestEffortOrNull(m.started_speaking_at, 6, 'UTC'), NULL) AS started_speaking_at,
    if(message, parseDateTime64BestEffortOrNull(m.stopped_speaking_at, 6, 'UTC'), NULL) AS stopped_speaking_at,
    if(message, m.end_of_turn_delay, NULL) AS end_of_turn_delay,
    if(message, m.transcription_delay, NULL) AS transcription_delay,
    if(message, m.on_user_turn_completed_delay, NULL) AS on_user_turn_completed_delay,
    if(message, m.llm_node_ttft, NULL) AS llm_node_ttft,
    if(message, m.llm_node_ttfs, NULL) AS llm_node_ttfs,
    if(message, m.tts_node_ttfb, NULL) AS tts_node_ttfb,
    if(message, m.playback_latency, NULL) AS playback_latency,
    if(message, m.e2e_latency, NULL) AS e2e_latency,
    if(message, stt.provider, NULL) AS stt_provider,
    if(message, stt.model, NULL) AS stt_model,
    if(message, llm.provider, NULL) AS llm_provider,
    if(message, llm.model, NULL) AS llm_model,
    if(message, tts.provider, NULL) AS tts_provider,
    if(message, tts.model, NULL) AS tts_model,
    if(type = 'turnlog.tools.executed.v1', arrayMap(c -> c.call_id, d.calls), []) AS tool_call_ids
FROM (SELECT type, value FROM {db}.ingest
      WHERE type IN ('turnlog.user.transcribed.v1', 'turnlog.conversation.item_added.v1',
                     'turnlog.tools.executed.v1'))
WHERE d.turn_id IS NOT NULL
  AND (NOT message OR d.role IN ('user', 'assistant'))
  AND (type != 'turnlog.tools.executed.v1' OR notEmpty(d.calls));

-- metrics: one row per metrics.collected. Token counts normalized across kinds (LLM
-- prompt/completion become input/output, realtime cached tokens come from its details);
-- `fields` is every number and flag of the metrics, nested objects flattened with dots
-- (three levels: the deepest the catalog has).
CREATE MATERIALIZED VIEW {db}.ingest_metrics_mv TO {db}.metrics AS
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
CREATE MATERIALIZED VIEW {db}.ingest_usage_mv TO {db}.usage AS
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
CREATE MATERIALIZED VIEW {db}.ingest_errors_mv TO {db}.errors AS
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
