-- What the projector needs on top of 0001's read models.
--
-- Every row is built by merging events that may arrive in any order, or twice. Each
-- column has one merge rule (projections/postgres/tables.py): least, greatest, sum,
-- union, written once, or "latest": the value written by the event with the greatest
-- sequence, whose sequence is kept in a *_seq column next to it. The *_seq columns make
-- last-writer-wins independent of arrival order.
--
-- 0001's tables were never written before this migration (no projector existed), so the
-- NOT NULL below cannot fail on an existing stack.

-- sessions -------------------------------------------------------------------------
ALTER TABLE sessions DROP CONSTRAINT sessions_status_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_status_check
    CHECK (status IN ('active', 'closed', 'failed'));
-- started_at: the earliest event time of the session (session.started's, once applied);
-- never null, so keyset pagination needs no NULL handling.
ALTER TABLE sessions ALTER COLUMN started_at SET NOT NULL;
ALTER TABLE sessions
    ADD COLUMN last_sequence            bigint NOT NULL DEFAULT 0,
    ADD COLUMN event_count              integer NOT NULL DEFAULT 0,
    ADD COLUMN started_seq              bigint,
    ADD COLUMN worker_id                text,
    ADD COLUMN room_sid                 text,
    ADD COLUMN accepted_at              timestamptz,
    ADD COLUMN linked_identity          text,
    ADD COLUMN stt_provider             text,
    ADD COLUMN stt_model                text,
    ADD COLUMN llm_provider             text,
    ADD COLUMN llm_model                text,
    ADD COLUMN tts_provider             text,
    ADD COLUMN tts_model                text,
    ADD COLUMN closed_seq               bigint,
    ADD COLUMN close_error              text,
    ADD COLUMN agent_seq                bigint,
    ADD COLUMN agent_id                 text,
    ADD COLUMN agent_ids                text[] NOT NULL DEFAULT '{}',
    ADD COLUMN participants             text[] NOT NULL DEFAULT '{}',
    ADD COLUMN false_interruptions      integer NOT NULL DEFAULT 0,
    ADD COLUMN handoffs                 integer NOT NULL DEFAULT 0,
    ADD COLUMN turn_timeouts            integer NOT NULL DEFAULT 0,
    ADD COLUMN usage_seq                bigint,
    ADD COLUMN usage                    jsonb,
    ADD COLUMN llm_prompt_tokens        bigint,
    ADD COLUMN llm_completion_tokens    bigint,
    ADD COLUMN tts_characters           bigint,
    ADD COLUMN tts_audio_s              double precision,
    ADD COLUMN stt_audio_s              double precision,
    ADD COLUMN error_seq                bigint,
    ADD COLUMN last_error               text,
    ADD COLUMN last_error_source        text;

-- The session list: newest first, keyset on (started_at, session_id), optionally within
-- one room, agent or status. Each filter has its own index in the list's order.
DROP INDEX sessions_room_idx;
CREATE INDEX sessions_room_idx ON sessions (room, started_at DESC, session_id DESC);
CREATE INDEX sessions_agent_idx ON sessions (agent_name, started_at DESC, session_id DESC);
CREATE INDEX sessions_status_idx ON sessions (status, started_at DESC, session_id DESC);

-- participants ---------------------------------------------------------------------
-- A participant may reconnect: joined_at is the first join; sid, name, kind and
-- last_joined_at come from the latest join, left_at from the latest leave; the
-- participant is present when joined_seq > coalesce(left_seq, 0).
ALTER TABLE participants
    ADD COLUMN joins                    integer NOT NULL DEFAULT 0,
    ADD COLUMN joined_seq               bigint,
    ADD COLUMN sid                      text,
    ADD COLUMN last_joined_at           timestamptz,
    ADD COLUMN left_seq                 bigint,
    ADD COLUMN disconnect_reason        text;

-- messages -------------------------------------------------------------------------
-- One committed conversation item; the transcript reads it by primary key
-- (session_id, sequence), so the (session_id, turn_id) index only cost writes.
DROP INDEX messages_turn_idx;
ALTER TABLE messages ALTER COLUMN confidence TYPE double precision;
ALTER TABLE messages
    ADD COLUMN agent_id                         text,
    ADD COLUMN started_speaking_at              timestamptz,
    ADD COLUMN stopped_speaking_at              timestamptz,
    ADD COLUMN on_user_turn_completed_delay_s   double precision,
    ADD COLUMN llm_tps                          double precision,
    ADD COLUMN llm_ttfs_s                       double precision,
    ADD COLUMN playback_latency_s               double precision,
    ADD COLUMN provider_request_ids             text[] NOT NULL DEFAULT '{}';

-- tool_calls -----------------------------------------------------------------------
-- Arguments are kept exactly as the LLM produced them: they may be invalid JSON.
ALTER TABLE tool_calls ALTER COLUMN arguments TYPE text;
ALTER TABLE tool_calls
    ADD COLUMN position                 integer NOT NULL DEFAULT 0,
    ADD COLUMN started_at               timestamptz,
    ADD COLUMN group_id                 text,
    ADD COLUMN reply_required           boolean NOT NULL DEFAULT true;

-- transcriptions -------------------------------------------------------------------
-- The STT history of a session is read by primary key (session_id, sequence).
DROP INDEX transcriptions_turn_idx;
ALTER TABLE transcriptions ALTER COLUMN confidence TYPE double precision;
ALTER TABLE transcriptions ADD COLUMN speaker_id text;
