-- The four read models, one per query. Each version of a projection owns its own
-- tables, named <base>_v<N>; the query surface reads stable views that point at the
-- active version. A rebuild creates version N+1 with projection_create_tables() and
-- switches with projection_activate(), both inside one transaction of its own.
-- A later change of a table's shape is a new migration that replaces the function
-- below, followed by `checkout-orchestrator projections rebuild NAME`.

CREATE FUNCTION projection_create_tables(name text, v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    t text;
BEGIN
    IF name = 'sessions' THEN
        t := format('rm_sessions_v%s', v);
        EXECUTE format($ddl$
            CREATE TABLE %I (
                session_id          text PRIMARY KEY,
                lifecycle           text NOT NULL,
                status              text NOT NULL,
                mode                text NOT NULL,
                ui_mode             text NOT NULL,
                provider            text,
                attempt             integer,
                provider_session_id text,
                livemode            boolean NOT NULL DEFAULT false,
                has_client_secret   boolean NOT NULL DEFAULT false,
                currency            text NOT NULL,
                amount_requested    bigint,
                amount_subtotal     bigint,
                amount_discount     bigint,
                amount_tax          bigint,
                amount_shipping     bigint,
                amount_total        bigint,
                line_items          jsonb NOT NULL,
                customer_email      text,
                customer_country    text,
                customer            jsonb NOT NULL,
                urls                jsonb NOT NULL,
                checkout_url        text,
                expires_at          timestamptz,
                payment_status      text,
                provider_status     text,
                provider_references jsonb NOT NULL,
                metadata            jsonb NOT NULL,
                client_reference_id text,
                failure_code        text,
                status_reason       text,
                created_at          timestamptz NOT NULL,
                updated_at          timestamptz NOT NULL,
                completed_at        timestamptz,
                event_count         integer NOT NULL,
                last_sequence       bigint NOT NULL
            )$ddl$, t);
        EXECUTE format('CREATE INDEX %I ON %I (created_at DESC, session_id DESC)',
                       t || '_created', t);
        EXECUTE format('CREATE INDEX %I ON %I (status, created_at DESC, session_id DESC)',
                       t || '_status', t);
        EXECUTE format('CREATE INDEX %I ON %I (provider, created_at DESC, session_id DESC)',
                       t || '_provider', t);
        EXECUTE format('CREATE INDEX %I ON %I (currency, created_at DESC, session_id DESC)',
                       t || '_currency', t);
        EXECUTE format('CREATE INDEX %I ON %I (customer_email, created_at DESC, session_id DESC)'
                       ' WHERE customer_email IS NOT NULL', t || '_email', t);
    ELSIF name = 'timeline' THEN
        t := format('rm_timeline_v%s', v);
        EXECUTE format($ddl$
            CREATE TABLE %I (
                session_id      text NOT NULL,
                sequence        bigint NOT NULL,
                type            text NOT NULL,
                schema_version  integer NOT NULL,
                occurred_at     timestamptz NOT NULL,
                event_id        text NOT NULL,
                command_id      text NOT NULL,
                correlation_id  text NOT NULL,
                causation_id    text NOT NULL,
                traceparent     text,
                trace_id        text,
                payload         jsonb NOT NULL,
                PRIMARY KEY (session_id, sequence)
            )$ddl$, t);
    ELSIF name = 'daily_totals' THEN
        t := format('rm_daily_totals_v%s', v);
        EXECUTE format($ddl$
            CREATE TABLE %I (
                day       date NOT NULL,
                provider  text NOT NULL,
                currency  text NOT NULL,
                status    text NOT NULL,
                sessions  bigint NOT NULL,
                amount    bigint NOT NULL,
                PRIMARY KEY (day, provider, currency, status)
            )$ddl$, t);
        -- which bucket each session counts in now, so a status change moves it
        EXECUTE format($ddl$
            CREATE TABLE %I (
                session_id      text PRIMARY KEY,
                created_at      timestamptz NOT NULL,
                provider        text NOT NULL,
                currency        text NOT NULL,
                status          text NOT NULL,
                amount_requested bigint,
                amount_total    bigint,
                lifecycle       text NOT NULL,
                attempt         integer,
                payment_status  text,
                last_sequence   bigint NOT NULL
            )$ddl$, format('rm_daily_totals_members_v%s', v));
    ELSIF name = 'routing' THEN
        t := format('rm_routing_v%s', v);
        EXECUTE format($ddl$
            CREATE TABLE %I (
                session_id      text NOT NULL,
                sequence        bigint NOT NULL,
                kind            text NOT NULL,
                occurred_at     timestamptz NOT NULL,
                attempt         integer NOT NULL,
                provider        text NOT NULL,
                rules_version   text,
                matched_rule    text,
                candidates      jsonb NOT NULL,
                dropped         jsonb NOT NULL,
                PRIMARY KEY (session_id, sequence)
            )$ddl$, t);
    ELSE
        RAISE EXCEPTION 'unknown projection %', name;
    END IF;
END
$fn$;

CREATE FUNCTION projection_tables(name text, v integer) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE name
        WHEN 'sessions' THEN ARRAY[format('rm_sessions_v%s', v)]
        WHEN 'timeline' THEN ARRAY[format('rm_timeline_v%s', v)]
        WHEN 'daily_totals' THEN ARRAY[format('rm_daily_totals_v%s', v),
                                       format('rm_daily_totals_members_v%s', v)]
        WHEN 'routing' THEN ARRAY[format('rm_routing_v%s', v)]
    END
$fn$;

-- Point the projection's view at version v (DDL is transactional: callers switch
-- the view and projection_versions in one transaction).
CREATE FUNCTION projection_activate(name text, v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    view_name text := CASE name
        WHEN 'sessions' THEN 'checkout_sessions'
        WHEN 'timeline' THEN 'session_timeline'
        WHEN 'daily_totals' THEN 'provider_daily_totals'
        WHEN 'routing' THEN 'routing_decisions'
    END;
BEGIN
    IF view_name IS NULL THEN
        RAISE EXCEPTION 'unknown projection %', name;
    END IF;
    EXECUTE format('DROP VIEW IF EXISTS %I', view_name);
    EXECUTE format('CREATE VIEW %I AS SELECT * FROM %I', view_name,
                   (projection_tables(name, v))[1]);
    INSERT INTO projection_versions (projection, active_version)
    VALUES (name, v)
    ON CONFLICT (projection) DO UPDATE
        SET active_version = EXCLUDED.active_version,
            building_version = NULL,
            switched_at = now();
END
$fn$;

-- Drop every table of version v (after a switch, or a rebuild given up).
CREATE FUNCTION projection_drop_tables(name text, v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY projection_tables(name, v) LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', t);
    END LOOP;
    DELETE FROM projection_checkpoints WHERE projection = name AND version = v;
    DELETE FROM parked_events WHERE projection = name AND version = v;
END
$fn$;

SELECT projection_create_tables(p, 1), projection_activate(p, 1)
FROM unnest(ARRAY['sessions', 'timeline', 'daily_totals', 'routing']) AS p;
