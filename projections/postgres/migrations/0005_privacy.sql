-- The key store and the erasures. Not read models: a rebuild reads them and never drops
-- them (they are the only copy of what they hold).

-- Wrapped data keys, one per session (key_id = session id), from turnlog.keys.
CREATE TABLE data_keys (
    key_id              text PRIMARY KEY,
    kek_id              text NOT NULL,
    algorithm           text NOT NULL,
    wrapping            text NOT NULL,
    wrapped_key         bytea NOT NULL,
    issued_at           timestamptz NOT NULL,
    stored_at           timestamptz NOT NULL DEFAULT now()
);

-- The erasure index: the SHA-256 of each participant identity a key's session holds
-- (agents excluded); the identities themselves are sealed in the events.
CREATE TABLE key_subjects (
    subject_digest      text NOT NULL,
    key_id              text NOT NULL,
    PRIMARY KEY (subject_digest, key_id)
);
CREATE INDEX key_subjects_key_idx ON key_subjects (key_id);

-- Every erasure asked for, what it covered and what each store did (no personal data:
-- an identity appears only as its SHA-256).
CREATE TABLE erasures (
    erasure_id          text PRIMARY KEY,
    scope               text NOT NULL CHECK (scope IN ('session', 'participant', 'retention')),
    requested_by        text NOT NULL,
    requested_at        timestamptz NOT NULL,
    completed_at        timestamptz,
    reason              text,
    subject_digest      text,
    session_ids         text[] NOT NULL DEFAULT '{}',
    steps               jsonb NOT NULL DEFAULT '[]'
);
CREATE INDEX erasures_requested_idx ON erasures (requested_at DESC);

-- Sessions whose key is destroyed. The projector reads it in every batch (under a SHARE
-- lock, so an erasure and a batch never interleave) and writes no personal row for them.
CREATE TABLE erased_sessions (
    session_id          text PRIMARY KEY,
    erasure_id          text NOT NULL REFERENCES erasures (erasure_id),
    erased_at           timestamptz NOT NULL
);
