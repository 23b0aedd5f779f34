-- Crypto-shredding (docs/privacy.md): one data key per data subject, wrapped by the
-- key-encryption key from the settings; never a person's data in clear here.

-- the HMAC key that turns an email or a customer reference into a lookup (wrapped)
CREATE TABLE IF NOT EXISTS privacy_keyring (
    id           smallint    PRIMARY KEY CHECK (id = 1),
    wrapped_key  bytea       NOT NULL,
    kek_id       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- one row per data subject; the key is NULL once the subject is forgotten
CREATE TABLE IF NOT EXISTS data_subjects (
    subject_id   text        PRIMARY KEY,
    wrapped_key  bytea,
    kek_id       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (forgotten_at IS NOT NULL))
);

-- HMAC(email or reference) -> subject: how a forget request finds its subjects
CREATE TABLE IF NOT EXISTS data_subject_lookups (
    lookup       bytea       NOT NULL,
    subject_id   text        NOT NULL REFERENCES data_subjects ON DELETE CASCADE,
    PRIMARY KEY (lookup, subject_id)
);
CREATE INDEX IF NOT EXISTS data_subject_lookups_subject ON data_subject_lookups (subject_id);

-- the sessions whose personal data was sealed for a subject
CREATE TABLE IF NOT EXISTS data_subject_sessions (
    subject_id   text        NOT NULL REFERENCES data_subjects ON DELETE CASCADE,
    session_id   text        NOT NULL,
    PRIMARY KEY (subject_id, session_id)
);

-- every forget request, found or not; never the email or the reference asked for
CREATE TABLE IF NOT EXISTS forget_requests (
    request_id   text        PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now(),
    asked_by     text        NOT NULL CHECK (asked_by IN ('email', 'customer_reference')),
    subjects     text[]      NOT NULL,
    sessions     text[]      NOT NULL
);
