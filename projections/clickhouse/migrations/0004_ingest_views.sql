-- One ingest view for every turn fact. {db} is the analytics database. 0003 had one view
-- per kind of fact (transcripts, messages, tool batches): three inserts into turn_facts
-- per batch, and three runs of the views that read it. Dropped and created again: a
-- view's SELECT cannot be altered in place.

DROP TABLE IF EXISTS {db}.ingest_transcripts_mv;
DROP TABLE IF EXISTS {db}.ingest_messages_mv;
DROP TABLE IF EXISTS {db}.ingest_tools_mv;

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
