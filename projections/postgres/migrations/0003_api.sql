-- The API's own tables: its keys, and the record of the LiveKit tokens it issued.

-- An API key is shown once, when it is made; only its SHA-256 is kept. Keys are 256-bit
-- random strings, so a plain digest is enough (no password hashing: nothing to guess).
CREATE TABLE api_keys (
    key_id              text PRIMARY KEY,
    name                text NOT NULL,
    key_hash            bytea NOT NULL UNIQUE,
    scopes              text[] NOT NULL
        CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['tokens', 'read', 'admin']::text[]),
    created_at          timestamptz NOT NULL DEFAULT now(),
    revoked_at          timestamptz
);

-- Who was given a token for which room, when, until when. Never the token itself.
CREATE TABLE token_issuances (
    issuance_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issued_at           timestamptz NOT NULL,
    key_id              text NOT NULL,
    client_address      text,
    room                text NOT NULL,
    identity            text NOT NULL,
    expires_at          timestamptz NOT NULL,
    agent_name          text
);
CREATE INDEX token_issuances_room_idx ON token_issuances (room, issued_at DESC);
CREATE INDEX token_issuances_identity_idx ON token_issuances (identity, issued_at DESC);
