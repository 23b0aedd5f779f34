-- API keys of the HTTP API. Only a salted HMAC-SHA256 of each key's secret is stored,
-- never the key: a leaked table does not let anyone in.
CREATE TABLE IF NOT EXISTS api_keys (
    id          text        PRIMARY KEY,
    salt        bytea       NOT NULL,
    secret_hash bytea       NOT NULL,
    scope       text        NOT NULL CHECK (scope IN ('read', 'write')),
    label       text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
