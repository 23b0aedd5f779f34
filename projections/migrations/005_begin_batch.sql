-- The start of a projector's batch in one round trip (projections/batch.py): the shared
-- switch locks of the followed projections (a rebuild's switch waits for the batch),
-- the version each projection writes (the active one, or a rebuild's pinned one), and
-- the checkpoints of the batch's partitions, created at 0 when missing and row-locked
-- FOR UPDATE until the transaction ends (a second owner of a partition waits here).
-- A followed projection without an active version raises no_data_found (P0002): the
-- batch is retried, nothing is parked.

CREATE FUNCTION projection_begin_batch(
    lock_classes integer[], lock_objects integer[],
    followed text[], pinned text[], pinned_versions integer[], parts integer[]
) RETURNS TABLE (projection text, version integer, partition integer, "position" bigint)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    names text[];
    versions integer[];
    missing text[];
    found integer;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(k.c, k.o)
    FROM unnest(lock_classes, lock_objects) WITH ORDINALITY AS k(c, o, n) ORDER BY k.n;

    SELECT coalesce(array_agg(w.name), '{}'), coalesce(array_agg(w.v), '{}')
    INTO names, versions
    FROM (
        SELECT pv.projection, pv.active_version FROM projection_versions pv
        WHERE pv.projection = ANY(followed) AND pv.active_version IS NOT NULL
        UNION ALL
        SELECT u.p, u.v FROM unnest(pinned, pinned_versions) AS u(p, v)
    ) AS w(name, v);

    SELECT array_agg(f) INTO missing FROM unnest(followed) AS f WHERE f <> ALL(names);
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'no active version of %: run `checkout-orchestrator migrate`', missing
            USING ERRCODE = 'no_data_found';
    END IF;

    SELECT count(*) INTO found
    FROM projection_checkpoints c
    JOIN unnest(names, versions) AS w(name, v) ON c.projection = w.name AND c.version = w.v
    WHERE c.partition = ANY(parts);
    IF found < cardinality(names) * cardinality(parts) THEN
        INSERT INTO projection_checkpoints (projection, version, partition)
        SELECT w.name, w.v, p FROM unnest(names, versions) AS w(name, v), unnest(parts) AS p
        ON CONFLICT DO NOTHING;
    END IF;

    RETURN QUERY
    SELECT c.projection, c.version, c.partition, c.position
    FROM projection_checkpoints c
    JOIN unnest(names, versions) AS w(name, v) ON c.projection = w.name AND c.version = w.v
    WHERE c.partition = ANY(parts)
    ORDER BY c.projection, c.partition
    FOR UPDATE OF c;
END
$fn$;
