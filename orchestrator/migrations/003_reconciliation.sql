-- What reconciliation found different between a provider and us, and what it did.
-- One row per (run, session) that differed, or per provider a run could not reach.
CREATE TABLE IF NOT EXISTS reconciliation_log (
    id                  bigserial PRIMARY KEY,
    run_id              text        NOT NULL,
    at                  timestamptz NOT NULL,
    provider            text        NOT NULL,
    session_id          text,
    provider_session_id text,
    ours                text,
    theirs              text,
    action              text        NOT NULL,
    dry_run             boolean     NOT NULL,
    detail              text
);
CREATE INDEX IF NOT EXISTS reconciliation_log_at ON reconciliation_log (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS reconciliation_log_session ON reconciliation_log (session_id)
    WHERE session_id IS NOT NULL;
