-- Provider references as data: the sessions read model already holds, from each
-- provider_session_opened event, (provider, provider_session_id) -> session_id. This
-- index makes that the lookup the webhook processor and reconciliation resolve a
-- provider's notification by, before (and without) our own metadata echoed back.
-- Existing versions get the index in place; new versions (a rebuild) from the wrapper
-- below, so the lookup never silently becomes a sequential scan.

DO $migrate$
DECLARE
    t text;
BEGIN
    FOR t IN
        SELECT tablename FROM pg_tables
        WHERE schemaname = current_schema() AND tablename ~ '^rm_sessions_v[0-9]+$'
    LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I (provider, provider_session_id)'
                       ' WHERE provider_session_id IS NOT NULL', t || '_provider_ref', t);
    END LOOP;
END
$migrate$;

ALTER FUNCTION projection_create_tables(text, integer) RENAME TO projection_create_tables_003;

CREATE FUNCTION projection_create_tables(name text, v integer) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    t text := format('rm_sessions_v%s', v);
BEGIN
    PERFORM projection_create_tables_003(name, v);
    IF name = 'sessions' THEN
        EXECUTE format('CREATE INDEX %I ON %I (provider, provider_session_id)'
                       ' WHERE provider_session_id IS NOT NULL', t || '_provider_ref', t);
    END IF;
END
$fn$;
