-- Bookkeeping shared by every projection: which version serves reads, how far each
-- (projection, version, partition) has applied the stream, and the events it parked.

CREATE TABLE projection_versions (
    projection      text PRIMARY KEY,
    active_version  integer NOT NULL CHECK (active_version >= 1),
    building_version integer,
    switched_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projection_checkpoints (
    projection  text    NOT NULL,
    version     integer NOT NULL,
    partition   integer NOT NULL CHECK (partition >= 0),
    position    bigint  NOT NULL DEFAULT 0 CHECK (position >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version, partition)
);

-- An event a projection could not apply: undecodable, unknown type, invalid payload,
-- or refused by the projection's fold. Kept with the raw message so it can be replayed.
CREATE TABLE parked_events (
    id          bigserial PRIMARY KEY,
    projection  text    NOT NULL,
    version     integer NOT NULL,
    partition   integer NOT NULL,
    sequence    bigint  NOT NULL,
    subject     text    NOT NULL,
    event_type  text,
    error       text    NOT NULL,
    headers     jsonb   NOT NULL DEFAULT '{}'::jsonb,
    payload     bytea   NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (projection, version, sequence)
);
