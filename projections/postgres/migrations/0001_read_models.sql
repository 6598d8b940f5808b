-- Conversation read models, built from turnlog.events by the projector.
-- No foreign keys: a session's events may arrive out of order (a message before
-- session.started), and every row is an upsert keyed by what the log says.

CREATE TABLE sessions (
    session_id          text PRIMARY KEY,
    room                text,
    agent_name          text,
    job_id              text,
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    close_reason        text,
    started_at          timestamptz,
    ended_at            timestamptz,
    user_turns          integer NOT NULL DEFAULT 0,
    assistant_turns     integer NOT NULL DEFAULT 0,
    interruptions       integer NOT NULL DEFAULT 0,
    tool_calls          integer NOT NULL DEFAULT 0,
    errors              integer NOT NULL DEFAULT 0,
    last_event_at       timestamptz
);
CREATE INDEX sessions_started_idx ON sessions (started_at DESC, session_id DESC);
CREATE INDEX sessions_room_idx ON sessions (room, started_at DESC);

CREATE TABLE participants (
    session_id          text NOT NULL,
    identity            text NOT NULL,
    kind                text,
    name                text,
    joined_at           timestamptz,
    left_at             timestamptz,
    PRIMARY KEY (session_id, identity)
);

-- One committed conversation item (a user or assistant turn).
CREATE TABLE messages (
    session_id                  text NOT NULL,
    sequence                    bigint NOT NULL,  -- of the event that committed it
    item_id                     text,
    turn_id                     text,
    role                        text NOT NULL,
    text                        text NOT NULL,
    interrupted                 boolean NOT NULL DEFAULT false,
    confidence                  real,
    created_at                  timestamptz NOT NULL,
    transcription_delay_s       double precision,
    end_of_utterance_delay_s    double precision,
    llm_ttft_s                  double precision,
    tts_ttfb_s                  double precision,
    e2e_latency_s               double precision,
    PRIMARY KEY (session_id, sequence)
);
CREATE INDEX messages_turn_idx ON messages (session_id, turn_id);

CREATE TABLE tool_calls (
    session_id          text NOT NULL,
    call_id             text NOT NULL,
    sequence            bigint NOT NULL,
    turn_id             text,
    name                text NOT NULL,
    arguments           jsonb,
    output              text,
    is_error            boolean NOT NULL DEFAULT false,
    duration_s          double precision,
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (session_id, call_id)
);

-- Every STT result, interim and final, to measure stability and time to final.
CREATE TABLE transcriptions (
    session_id          text NOT NULL,
    sequence            bigint NOT NULL,
    turn_id             text,
    is_final            boolean NOT NULL,
    text                text NOT NULL,
    language            text,
    confidence          real,
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (session_id, sequence)
);
CREATE INDEX transcriptions_turn_idx ON transcriptions (session_id, turn_id, sequence);

-- Idempotency: an event whose (session_id, sequence) is here was applied already.
CREATE TABLE applied_events (
    session_id          text NOT NULL,
    sequence            bigint NOT NULL,
    PRIMARY KEY (session_id, sequence)
);

-- Consumed positions, committed in the same transaction as the rows they produced.
CREATE TABLE consumer_offsets (
    consumer            text NOT NULL,
    topic               text NOT NULL,
    partition           integer NOT NULL,
    next_offset         bigint NOT NULL,
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
