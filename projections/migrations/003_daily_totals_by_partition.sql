-- Daily totals keyed by partition too, so workers owning different partitions never
-- wait on each other's bucket rows (queries sum over partitions). New versions get the
-- column from the replaced projection_create_tables(); existing versions get it in
-- place, their rows so far under partition -1 (sums stay exact: later moves out of
-- such a bucket are negative rows of the session's partition).

DO $migrate$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT tablename FROM pg_tables
        WHERE schemaname = current_schema() AND tablename ~ '^rm_daily_totals_v[0-9]+$'
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN partition integer NOT NULL DEFAULT -1', t);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t, t || '_pkey');
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (day, provider, currency, status, partition)', t);
    END LOOP;
END
$migrate$;

CREATE OR REPLACE FUNCTION projection_create_daily_totals_tables(v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    EXECUTE format($ddl$
        CREATE TABLE %I (
            day       date NOT NULL,
            provider  text NOT NULL,
            currency  text NOT NULL,
            status    text NOT NULL,
            sessions  bigint NOT NULL,
            amount    bigint NOT NULL,
            partition integer NOT NULL DEFAULT -1,
            PRIMARY KEY (day, provider, currency, status, partition)
        )$ddl$, format('rm_daily_totals_v%s', v));
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
END
$fn$;

-- The view keeps its shape (no partition column): readers never see the split.
CREATE OR REPLACE FUNCTION projection_activate(name text, v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    view_name text := CASE name
        WHEN 'sessions' THEN 'checkout_sessions'
        WHEN 'timeline' THEN 'session_timeline'
        WHEN 'daily_totals' THEN 'provider_daily_totals'
        WHEN 'routing' THEN 'routing_decisions'
    END;
    body text;
BEGIN
    IF view_name IS NULL THEN
        RAISE EXCEPTION 'unknown projection %', name;
    END IF;
    body := CASE name
        WHEN 'daily_totals' THEN format(
            'SELECT day, provider, currency, status, sum(sessions)::bigint AS sessions, '
            'sum(amount)::bigint AS amount FROM %I GROUP BY day, provider, currency, status',
            format('rm_daily_totals_v%s', v))
        ELSE format('SELECT * FROM %I', (projection_tables(name, v))[1])
    END;
    EXECUTE format('DROP VIEW IF EXISTS %I', view_name);
    EXECUTE format('CREATE VIEW %I AS %s', view_name, body);
    INSERT INTO projection_versions (projection, active_version)
    VALUES (name, v)
    ON CONFLICT (projection) DO UPDATE
        SET active_version = EXCLUDED.active_version,
            building_version = NULL,
            switched_at = now();
END
$fn$;

-- 002's function stays for the other projections' shapes, under a versioned name.
ALTER FUNCTION projection_create_tables(text, integer) RENAME TO projection_create_tables_002;

CREATE FUNCTION projection_create_tables(name text, v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF name = 'daily_totals' THEN
        PERFORM projection_create_daily_totals_tables(v);
    ELSE
        PERFORM projection_create_tables_002(name, v);
    END IF;
END
$fn$;

SELECT projection_activate('daily_totals', active_version)
FROM projection_versions WHERE projection = 'daily_totals';
