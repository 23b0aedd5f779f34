-- Raw provider webhooks, stored before we answer 2xx; one row per provider event id.
CREATE TABLE IF NOT EXISTS webhook_inbox (
    id            bigserial PRIMARY KEY,
    provider      text        NOT NULL,
    event_id      text        NOT NULL,
    received_at   timestamptz NOT NULL,
    headers       jsonb       NOT NULL,
    body          bytea       NOT NULL,
    status        text        NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'done', 'ignored', 'unresolved', 'rejected')),
    attempts      integer     NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL DEFAULT now(),
    session_id    text,
    outcome       text,
    processed_at  timestamptz,
    UNIQUE (provider, event_id)
);
CREATE INDEX IF NOT EXISTS webhook_inbox_due ON webhook_inbox (not_before, id) WHERE status = 'pending';
