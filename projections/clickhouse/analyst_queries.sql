-- Example analyst queries, shared by the README and the tests (tests/integration/
-- test_ch_analyst.py runs each on recorded sessions). Tables are unqualified: run them
-- with the analytics database as the default, e.g.
--   python -m turnlog.projections.clickhouse query --database turnlog "$(cat query.sql)"

-- name: latency_percentiles_by_provider
-- Response latency by stage and provider over the last 24 hours, in milliseconds.
-- eou: end of the user's speech to the end-of-turn decision; stt: end of speech to the
-- final transcript; llm: time to the first token; tts: time to the first audio byte;
-- e2e: end of the user's speech to the agent's answer. From the per-minute rollup.
SELECT
    stage,
    provider,
    model,
    sum(samples) AS measured,
    round(sum(total_us) / measured / 1000) AS mean_ms,
    quantileTimingMerge(0.5)(quantiles_ms) AS p50_ms,
    quantileTimingMerge(0.9)(quantiles_ms) AS p90_ms,
    quantileTimingMerge(0.99)(quantiles_ms) AS p99_ms
FROM latency_1m
WHERE minute >= now() - INTERVAL 1 DAY
GROUP BY stage, provider, model
ORDER BY stage, p90_ms DESC;

-- name: slowest_turns
-- The 20 slowest answers of the last 24 hours by total response latency, with where
-- the time went (seconds) and what the user said (sealed, as every personal field: a
-- `tlsealed1:` token here; the console opens it).
SELECT
    started_at,
    session_id,
    turn_id,
    e2e_latency,
    end_of_turn_delay,
    transcription_delay,
    llm_ttft,
    tts_ttfb,
    tool_calls,
    interrupted,
    llm_provider,
    llm_model,
    leftUTF8(user_text, 60) AS user_said
FROM turns
WHERE started_at >= now() - INTERVAL 1 DAY AND e2e_latency IS NOT NULL
ORDER BY e2e_latency DESC
LIMIT 20;

-- name: interruption_rate
-- How often users cut the agent off: answered turns and interrupted answers per hour
-- over the last 7 days.
SELECT
    toStartOfHour(minute) AS hour,
    uniqExactMerge(turns) AS answered_turns,
    uniqExactMerge(interrupted) AS interrupted_turns,
    round(interrupted_turns / answered_turns, 3) AS interruption_rate
FROM turns_1m
WHERE minute >= now() - INTERVAL 7 DAY
GROUP BY hour
ORDER BY hour;

-- name: usage_per_session
-- What each session used, from its latest usage totals (usage.updated is cumulative:
-- the table keeps the latest per session and model), most LLM tokens first.
SELECT
    session_id,
    max(room) AS room,
    sumIf(input_tokens, kind = 'llm') AS llm_input_tokens,
    sumIf(cached_input_tokens, kind = 'llm') AS llm_cached_tokens,
    sumIf(output_tokens, kind = 'llm') AS llm_output_tokens,
    round(sumIf(audio_duration, kind = 'stt'), 1) AS stt_audio_s,
    sumIf(characters_count, kind = 'tts') AS tts_characters,
    round(sumIf(audio_duration, kind = 'tts'), 1) AS tts_audio_s,
    max(time) AS updated_at
FROM usage FINAL
WHERE time >= now() - INTERVAL 7 DAY
GROUP BY session_id
ORDER BY llm_input_tokens + llm_output_tokens DESC
LIMIT 50;

-- name: transcript_stability
-- How much interim transcripts change before they are final, by language, over the last
-- 7 days. Each interim is compared with the next final transcript of its turn.
-- stable_share: interims that the final only extends; revision: the share of an
-- interim's characters the final changed (edit distance to the final's beginning of the
-- same length; 0 = the user saw nothing that was later corrected). It reads transcripts in
-- clear: on sealed events only identical texts compare equal, so its figures hold for
-- producers that do not seal.
WITH transcripts AS
(
    SELECT
        session_id,
        turn_id,
        sequence,
        JSONExtractString(data, 'transcript') AS text,
        JSONExtractBool(data, 'is_final') AS is_final,
        JSONExtractString(data, 'language') AS language
    FROM events FINAL
    WHERE type = 'turnlog.user.transcribed.v1' AND turn_id IS NOT NULL
      AND time >= now() - INTERVAL 7 DAY
),
turn_transcripts AS
(
    SELECT
        argMaxIf(language, sequence, is_final) AS language,
        arraySort(groupArrayIf((sequence, text), is_final)) AS finals,
        arraySort(groupArrayIf((sequence, text), NOT is_final)) AS interims
    FROM transcripts
    GROUP BY session_id, turn_id
),
pairs AS
(
    SELECT
        language,
        interim.2 AS interim_text,
        arrayFirst(f -> f.1 > interim.1, finals).2 AS final_text
    FROM turn_transcripts
    ARRAY JOIN interims AS interim
)
SELECT
    if(language = '', 'unknown', language) AS language,
    count() AS interims,
    round(countIf(startsWith(lower(final_text), lower(interim_text))) / count(), 3)
        AS stable_share,
    round(avg(editDistanceUTF8(lower(interim_text),
                               lower(leftUTF8(final_text, lengthUTF8(interim_text))))
              / greatest(lengthUTF8(interim_text), 1)), 3) AS revision
FROM pairs
WHERE final_text != ''
GROUP BY language
ORDER BY interims DESC;
