-- Console sessions: a browser that logged in with an API key holds an opaque random
-- cookie; only its SHA-256 is kept, with the key it stands for, the session's CSRF token
-- (useless without the cookie) and its lifetime. A revoked or deleted key ends them.
CREATE TABLE console_sessions (
    session_hash        bytea PRIMARY KEY,
    key_id              text NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
    csrf_token          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL
);
CREATE INDEX console_sessions_key_idx ON console_sessions (key_id);
CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
