-- Analytics tables, per-minute rollups and the writer's positions. {db} is the database.
--
-- Deduplication, in three layers (see projections/clickhouse/README.md):
-- 1. Every table the writer inserts into, and every rollup a materialized view feeds,
--    keeps the hashes of its last 10000 insert blocks (non_replicated_deduplication_window),
--    so a retried batch, inserted again with the same insert_deduplication_token, adds
--    nothing: not to the table, not to the rollups (deduplicate_blocks_in_dependent_
--    materialized_views).
-- 2. Base tables are ReplacingMergeTree keyed by the event (session_id, sequence): an event
--    written twice in differently cut batches collapses (read them with FINAL).
-- 3. The writer records the next Kafka offset it has not applied per partition (positions)
--    and skips what it has applied when batches are re-read after a restart.

-- The raw events table predates insert tokens: give it the same deduplication window,
-- and a time index for window queries (the key is (session_id, sequence)).
ALTER TABLE {db}.events MODIFY SETTING non_replicated_deduplication_window = 10000;
ALTER TABLE {db}.events ADD INDEX IF NOT EXISTS time_idx time TYPE minmax GRANULARITY 1;

-- One row per turn fact: each event of a turn that carries something about it (a user or
-- assistant message, a transcript, a tool batch). Facts of one turn arrive in several
-- events, in any order; turn_states merges them, the turns view reads them.
CREATE TABLE IF NOT EXISTS {db}.turn_facts
(
    session_id                   String,
    turn_id                      String,
    sequence                     UInt64,
    time                         DateTime64(6, 'UTC'),
    room                         String,
    type                         LowCardinality(String),
    role                         LowCardinality(String),
    item_id                      Nullable(String),
    text                         Nullable(String),
    is_final                     Nullable(Bool),
    language                     Nullable(String),
    transcript_confidence        Nullable(Float64),
    agent_id                     Nullable(String),
    interrupted                  Nullable(Bool),
    started_speaking_at          Nullable(DateTime64(6, 'UTC')),
    stopped_speaking_at          Nullable(DateTime64(6, 'UTC')),
    end_of_turn_delay            Nullable(Float64),
    transcription_delay          Nullable(Float64),
    on_user_turn_completed_delay Nullable(Float64),
    llm_node_ttft                Nullable(Float64),
    llm_node_ttfs                Nullable(Float64),
    tts_node_ttfb                Nullable(Float64),
    playback_latency             Nullable(Float64),
    e2e_latency                  Nullable(Float64),
    stt_provider                 Nullable(String),
    stt_model                    Nullable(String),
    llm_provider                 Nullable(String),
    llm_model                    Nullable(String),
    tts_provider                 Nullable(String),
    tts_model                    Nullable(String),
    tool_call_ids                Array(String),
    ingested_at                  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (session_id, turn_id, sequence)
SETTINGS non_replicated_deduplication_window = 10000;

-- The turn facts merged per turn. Every column is an aggregate that a duplicate cannot
-- change (first by sequence, min, max, distinct), so the merged turn is the same whatever
-- the arrival order and however often a fact was written.
CREATE TABLE IF NOT EXISTS {db}.turn_states
(
    session_id                   String,
    turn_id                      String,
    room                         SimpleAggregateFunction(max, String),
    started_at                   SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    ended_at                     SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    answered                     SimpleAggregateFunction(max, Bool),
    interrupted                  SimpleAggregateFunction(max, Bool),
    user_item_id                 AggregateFunction(argMin, Nullable(String), UInt64),
    assistant_item_id            AggregateFunction(argMin, Nullable(String), UInt64),
    user_text                    AggregateFunction(argMin, Nullable(String), UInt64),
    assistant_text               AggregateFunction(argMin, Nullable(String), UInt64),
    final_transcript             AggregateFunction(argMax, Nullable(String), UInt64),
    agent_id                     AggregateFunction(argMin, Nullable(String), UInt64),
    language                     AggregateFunction(argMax, Nullable(String), UInt64),
    transcript_confidence        AggregateFunction(argMin, Nullable(Float64), UInt64),
    first_interim_at             SimpleAggregateFunction(min, Nullable(DateTime64(6, 'UTC'))),
    first_final_at               SimpleAggregateFunction(min, Nullable(DateTime64(6, 'UTC'))),
    interim_transcripts          AggregateFunction(uniqExact, UInt64),
    final_transcripts            AggregateFunction(uniqExact, UInt64),
    user_started_speaking_at     AggregateFunction(argMin, Nullable(DateTime64(6, 'UTC')), UInt64),
    user_stopped_speaking_at     AggregateFunction(argMin, Nullable(DateTime64(6, 'UTC')), UInt64),
    agent_started_speaking_at    AggregateFunction(argMin, Nullable(DateTime64(6, 'UTC')), UInt64),
    end_of_turn_delay            AggregateFunction(argMin, Nullable(Float64), UInt64),
    transcription_delay          AggregateFunction(argMin, Nullable(Float64), UInt64),
    on_user_turn_completed_delay AggregateFunction(argMin, Nullable(Float64), UInt64),
    llm_node_ttft                AggregateFunction(argMin, Nullable(Float64), UInt64),
    llm_node_ttfs                AggregateFunction(argMin, Nullable(Float64), UInt64),
    tts_node_ttfb                AggregateFunction(argMin, Nullable(Float64), UInt64),
    playback_latency             AggregateFunction(argMin, Nullable(Float64), UInt64),
    e2e_latency                  AggregateFunction(argMin, Nullable(Float64), UInt64),
    stt_provider                 AggregateFunction(argMin, Nullable(String), UInt64),
    stt_model                    AggregateFunction(argMin, Nullable(String), UInt64),
    llm_provider                 AggregateFunction(argMin, Nullable(String), UInt64),
    llm_model                    AggregateFunction(argMin, Nullable(String), UInt64),
    tts_provider                 AggregateFunction(argMin, Nullable(String), UInt64),
    tts_model                    AggregateFunction(argMin, Nullable(String), UInt64),
    tool_call_ids                SimpleAggregateFunction(groupUniqArrayArray, Array(String))
)
ENGINE = AggregatingMergeTree
ORDER BY (session_id, turn_id)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.turn_states_mv TO {db}.turn_states AS
SELECT
    session_id,
    turn_id,
    max(room) AS room,
    min(time) AS started_at,
    max(time) AS ended_at,
    max(role = 'assistant') AS answered,
    max(role = 'assistant' AND ifNull(interrupted, false)) AS interrupted,
    argMinState(if(role = 'user', item_id, NULL), sequence) AS user_item_id,
    argMinState(if(role = 'assistant', item_id, NULL), sequence) AS assistant_item_id,
    argMinState(if(role = 'user', text, NULL), sequence) AS user_text,
    argMinState(if(role = 'assistant', text, NULL), sequence) AS assistant_text,
    argMaxState(if(ifNull(is_final, false), text, NULL), sequence) AS final_transcript,
    argMinState(agent_id, sequence) AS agent_id,
    argMaxState(if(ifNull(is_final, false), language, NULL), sequence) AS language,
    argMinState(transcript_confidence, sequence) AS transcript_confidence,
    min(if(is_final = false, time, NULL)) AS first_interim_at,
    min(if(is_final = true, time, NULL)) AS first_final_at,
    uniqExactIfState(sequence, ifNull(is_final = false, false)) AS interim_transcripts,
    uniqExactIfState(sequence, ifNull(is_final = true, false)) AS final_transcripts,
    argMinState(if(role = 'user', started_speaking_at, NULL), sequence) AS user_started_speaking_at,
    argMinState(if(role = 'user', stopped_speaking_at, NULL), sequence) AS user_stopped_speaking_at,
    argMinState(if(role = 'assistant', started_speaking_at, NULL), sequence) AS agent_started_speaking_at,
    argMinState(end_of_turn_delay, sequence) AS end_of_turn_delay,
    argMinState(transcription_delay, sequence) AS transcription_delay,
    argMinState(on_user_turn_completed_delay, sequence) AS on_user_turn_completed_delay,
    argMinState(llm_node_ttft, sequence) AS llm_node_ttft,
    argMinState(llm_node_ttfs, sequence) AS llm_node_ttfs,
    argMinState(tts_node_ttfb, sequence) AS tts_node_ttfb,
    argMinState(playback_latency, sequence) AS playback_latency,
    argMinState(e2e_latency, sequence) AS e2e_latency,
    argMinState(stt_provider, sequence) AS stt_provider,
    argMinState(stt_model, sequence) AS stt_model,
    argMinState(llm_provider, sequence) AS llm_provider,
    argMinState(llm_model, sequence) AS llm_model,
    argMinState(tts_provider, sequence) AS tts_provider,
    argMinState(tts_model, sequence) AS tts_model,
    groupUniqArrayArray(tool_call_ids) AS tool_call_ids
FROM {db}.turn_facts
GROUP BY session_id, turn_id;

-- One row per turn, its facts merged. Latencies in seconds.
CREATE VIEW IF NOT EXISTS {db}.turns AS
SELECT
    session_id,
    turn_id,
    max(room) AS room,
    min(started_at) AS started_at,
    max(ended_at) AS ended_at,
    max(answered) AS answered,
    max(interrupted) AS interrupted,
    argMinMerge(user_item_id) AS user_item_id,
    argMinMerge(assistant_item_id) AS assistant_item_id,
    argMinMerge(user_text) AS user_text,
    argMinMerge(assistant_text) AS assistant_text,
    argMaxMerge(final_transcript) AS final_transcript,
    argMinMerge(agent_id) AS agent_id,
    argMaxMerge(language) AS language,
    argMinMerge(transcript_confidence) AS transcript_confidence,
    uniqExactMerge(interim_transcripts) AS interim_transcripts,
    uniqExactMerge(final_transcripts) AS final_transcripts,
    min(first_interim_at) AS first_interim_at,
    min(first_final_at) AS first_final_at,
    if(first_interim_at <= first_final_at,
       dateDiff('microsecond', first_interim_at, first_final_at) / 1e6,
       NULL) AS stt_time_to_final,
    argMinMerge(user_started_speaking_at) AS user_started_speaking_at,
    argMinMerge(user_stopped_speaking_at) AS user_stopped_speaking_at,
    argMinMerge(agent_started_speaking_at) AS agent_started_speaking_at,
    argMinMerge(end_of_turn_delay) AS end_of_turn_delay,
    argMinMerge(transcription_delay) AS transcription_delay,
    argMinMerge(on_user_turn_completed_delay) AS on_user_turn_completed_delay,
    argMinMerge(llm_node_ttft) AS llm_ttft,
    argMinMerge(llm_node_ttfs) AS llm_ttfs,
    argMinMerge(tts_node_ttfb) AS tts_ttfb,
    argMinMerge(playback_latency) AS playback_latency,
    argMinMerge(e2e_latency) AS e2e_latency,
    argMinMerge(stt_provider) AS stt_provider,
    argMinMerge(stt_model) AS stt_model,
    argMinMerge(llm_provider) AS llm_provider,
    argMinMerge(llm_model) AS llm_model,
    argMinMerge(tts_provider) AS tts_provider,
    argMinMerge(tts_model) AS tts_model,
    length(groupUniqArrayArray(tool_call_ids)) AS tool_calls
FROM {db}.turn_states
GROUP BY session_id, turn_id;

-- Component metrics (metrics.collected), one row per event. Durations in seconds; token
-- counts normalized across kinds (LLM prompt/completion become input/output); `fields`
-- keeps every numeric field of the metrics under LiveKit's name.
CREATE TABLE IF NOT EXISTS {db}.metrics
(
    session_id                   String,
    sequence                     UInt64,
    turn_id                      Nullable(String),
    time                         DateTime64(6, 'UTC'),
    room                         String,
    kind                         LowCardinality(String),
    provider                     LowCardinality(String),
    model                        LowCardinality(String),
    label                        String,
    request_id                   String,
    speech_id                    Nullable(String),
    measured_at                  DateTime64(6, 'UTC'),
    duration                     Nullable(Float64),
    ttft                         Nullable(Float64),
    ttfb                         Nullable(Float64),
    audio_duration               Nullable(Float64),
    end_of_utterance_delay       Nullable(Float64),
    transcription_delay          Nullable(Float64),
    cancelled                    Nullable(Bool),
    input_tokens                 Int64,
    cached_input_tokens          Int64,
    output_tokens                Int64,
    total_tokens                 Int64,
    characters_count             Int64,
    fields                       Map(LowCardinality(String), Float64),
    ingested_at                  DateTime64(6, 'UTC') DEFAULT now64(6),
    INDEX time_idx time TYPE minmax GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (session_id, sequence)
SETTINGS non_replicated_deduplication_window = 10000;

-- Session usage (usage.updated), one row per session, kind, provider and model. The
-- totals are cumulative, so the latest event wins: ReplacingMergeTree versioned by the
-- sequence keeps it (read with FINAL); a duplicate has the same version and collapses.
CREATE TABLE IF NOT EXISTS {db}.usage
(
    session_id                   String,
    kind                         LowCardinality(String),
    provider                     LowCardinality(String),
    model                        LowCardinality(String),
    sequence                     UInt64,
    time                         DateTime64(6, 'UTC'),
    room                         String,
    input_tokens                 Int64,
    cached_input_tokens          Int64,
    output_tokens                Int64,
    characters_count             Int64,
    audio_duration               Float64,
    session_duration             Float64,
    requests                     Int64,
    fields                       Map(LowCardinality(String), Float64),
    ingested_at                  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(sequence)
ORDER BY (session_id, kind, provider, model)
SETTINGS non_replicated_deduplication_window = 10000;

-- Errors reported by the session's components (error events), one row per event.
CREATE TABLE IF NOT EXISTS {db}.errors
(
    session_id                   String,
    sequence                     UInt64,
    turn_id                      Nullable(String),
    time                         DateTime64(6, 'UTC'),
    room                         String,
    source                       LowCardinality(String),
    provider                     LowCardinality(String),
    model                        LowCardinality(String),
    error_type                   LowCardinality(String),
    label                        String,
    message                      String,
    recoverable                  Bool,
    status_code                  Nullable(Int64),
    ingested_at                  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (session_id, sequence)
SETTINGS non_replicated_deduplication_window = 10000;

-- Per-minute rollups. Distinct counts are uniqExact states, which no duplicate can
-- inflate; sums and latency histograms rely on the insert tokens and positions.

-- Sessions started, closed, and closed on an error, per minute.
CREATE TABLE IF NOT EXISTS {db}.sessions_1m
(
    minute                       DateTime('UTC'),
    started                      AggregateFunction(uniqExact, String),
    closed                       AggregateFunction(uniqExact, String),
    failed                       AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY minute
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.sessions_1m_mv TO {db}.sessions_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    uniqExactIfState(session_id, type = 'turnlog.session.started.v1') AS started,
    uniqExactIfState(session_id, type = 'turnlog.session.closed.v1') AS closed,
    uniqExactIfState(session_id, type = 'turnlog.session.closed.v1'
                     AND JSONExtractString(data, 'reason') = 'error') AS failed
FROM {db}.events
WHERE type IN ('turnlog.session.started.v1', 'turnlog.session.closed.v1')
GROUP BY minute;

-- Turns the agent answered, and answers the user interrupted, per minute (the minute of
-- the assistant message).
CREATE TABLE IF NOT EXISTS {db}.turns_1m
(
    minute                       DateTime('UTC'),
    turns                        AggregateFunction(uniqExact, String, String),
    interrupted                  AggregateFunction(uniqExact, String, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY minute
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.turns_1m_mv TO {db}.turns_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    uniqExactState(session_id, turn_id) AS turns,
    uniqExactIfState(session_id, turn_id, ifNull(interrupted, false)) AS interrupted
FROM {db}.turn_facts
WHERE role = 'assistant'
GROUP BY minute;

-- Errors per minute, by component and provider.
CREATE TABLE IF NOT EXISTS {db}.errors_1m
(
    minute                       DateTime('UTC'),
    source                       LowCardinality(String),
    provider                     LowCardinality(String),
    errors                       SimpleAggregateFunction(sum, UInt64),
    unrecoverable                SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, source, provider)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.errors_1m_mv TO {db}.errors_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    source,
    provider,
    count() AS errors,
    countIf(NOT recoverable) AS unrecoverable
FROM {db}.errors
GROUP BY minute, source, provider;

-- Turn latency per minute, by stage and the provider and model of that stage:
-- eou = end_of_turn_delay and stt = transcription_delay (STT provider), llm =
-- llm_node_ttft (LLM), tts = tts_node_ttfb (TTS), e2e = e2e_latency (LLM). One sample per
-- message that measured it. quantilesTiming keeps a histogram in milliseconds: exact
-- below 1024 ms, 16 ms buckets above, capped at 30 s; deterministic whatever the order.
CREATE TABLE IF NOT EXISTS {db}.latency_1m
(
    minute                       DateTime('UTC'),
    stage                        LowCardinality(String),
    provider                     LowCardinality(String),
    model                        LowCardinality(String),
    samples                      SimpleAggregateFunction(sum, UInt64),
    total_us                     SimpleAggregateFunction(sum, UInt64),
    max_us                       SimpleAggregateFunction(max, UInt64),
    quantiles_ms                 AggregateFunction(quantilesTiming(0.5, 0.9, 0.99), UInt32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, stage, provider, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.latency_1m_mv TO {db}.latency_1m AS
SELECT
    toStartOfMinute(time) AS minute,
    sample.1 AS stage,
    sample.2 AS provider,
    sample.3 AS model,
    count() AS samples,
    sum(toUInt64(round(sample.4 * 1000000))) AS total_us,
    max(toUInt64(round(sample.4 * 1000000))) AS max_us,
    quantilesTimingState(0.5, 0.9, 0.99)(toUInt32(least(round(sample.4 * 1000), 30000))) AS quantiles_ms
FROM {db}.turn_facts
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

-- Usage per minute by kind, provider and model, from the per-request component metrics
-- (usage.updated holds cumulative session totals; these are the increments). Seconds of
-- audio are summed as integer microseconds so the sums do not depend on the order.
CREATE TABLE IF NOT EXISTS {db}.usage_1m
(
    minute                       DateTime('UTC'),
    kind                         LowCardinality(String),
    provider                     LowCardinality(String),
    model                        LowCardinality(String),
    requests                     SimpleAggregateFunction(sum, Int64),
    cancelled                    SimpleAggregateFunction(sum, Int64),
    input_tokens                 SimpleAggregateFunction(sum, Int64),
    cached_input_tokens          SimpleAggregateFunction(sum, Int64),
    output_tokens                SimpleAggregateFunction(sum, Int64),
    characters                   SimpleAggregateFunction(sum, Int64),
    audio_us                     SimpleAggregateFunction(sum, Int64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, kind, provider, model)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_1m_mv TO {db}.usage_1m AS
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
FROM {db}.metrics
WHERE kind IN ('stt', 'llm', 'tts', 'realtime_model')
GROUP BY minute, kind, provider, model;

-- The writer's position per Kafka partition: the next offset it has not applied. Written
-- after each batch's rows, so records below it are skipped when they are read again.
CREATE TABLE IF NOT EXISTS {db}.positions
(
    topic                        LowCardinality(String),
    partition                    UInt32,
    next_offset                  UInt64,
    written_at                   DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(next_offset)
ORDER BY (topic, partition)
SETTINGS non_replicated_deduplication_window = 10000;
