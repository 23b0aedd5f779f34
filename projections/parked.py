"""Parked events: an alarm to look at, and a tool to apply them again after a fix.

An event is parked when a projection could not apply it (`projections.batch`): it is
kept with its raw message and error, and the projection's checkpoint moves past it, so
one bad event never stops a partition. A parked event is also a hole in a read model
(a session missing from ``checkout_sessions``, say), so it must be seen and dealt with:

- `ParkedEvents.list` shows them (``projections status``, ``GET /v1/operator/parked-events``);
- `replay_parked` applies them again, once the cause is fixed (new code, a repaired
  database), in stream order. Each event is re-applied in its own transaction together
  with the deletion of its parked row: its effect is written exactly once (a replayed
  event is no longer parked; the checkpoint is already past it, so the projector never
  applies it again). One that still fails stays parked, with its new error. Rows are
  taken ``FOR UPDATE SKIP LOCKED``: two replays at once never take the same event.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from events.errors import DecodeError
from projections.batch import is_poison_error
from projections.checkpoints import Binding, take_switch_locks
from projections.decoding import decode_stored
from projections.read_models import Projection, all_projections

__all__ = ["ParkedEvent", "ParkedEvents", "ReplayOutcome", "replay_parked"]


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    projection: str
    version: int
    partition: int
    sequence: int
    subject: str
    event_type: str | None
    error: str
    parked_at: datetime


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    replayed: int
    """events applied and no longer parked"""
    still_parked: list[ParkedEvent]
    """events that failed again (with their new error)"""


_LIVE = """
FROM parked_events p
JOIN projection_versions v ON v.projection = p.projection
WHERE p.version IN (v.active_version, v.building_version)
  AND ($1::text IS NULL OR p.projection = $1)
"""

_LIST = f"""
SELECT p.projection, p.version, p.partition, p.sequence, p.subject, p.event_type, p.error,
       p.parked_at
{_LIVE}
ORDER BY p.sequence, p.projection
LIMIT $2
"""

_COUNT = f"SELECT count(*) {_LIVE}"

_IDS = f"SELECT p.id {_LIVE} ORDER BY p.sequence, p.id LIMIT $2"

_TAKE = """
SELECT id, projection, version, partition, sequence, subject, event_type, error, headers,
       payload, parked_at
FROM parked_events WHERE id = $1
FOR UPDATE SKIP LOCKED
"""


class ParkedEvents:
    """Read access to the parked events of the serving (and building) versions."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, *, projection: str | None = None, limit: int = 100) -> list[ParkedEvent]:
        async with self._pool.acquire() as conn:
            return [ParkedEvent(**dict(r)) for r in await conn.fetch(_LIST, projection, limit)]

    async def count(self, *, projection: str | None = None) -> int:
        async with self._pool.acquire() as conn:
            return int(await conn.fetchval(_COUNT, projection))

    async def page(
        self, *, projection: str | None = None, limit: int = 100
    ) -> tuple[int, Sequence[ParkedEvent]]:
        """The count and the first ``limit`` events, from one snapshot (two separate
        reads could see a batch park its events between them: a count without its rows)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            count = int(await conn.fetchval(_COUNT, projection))
            rows = await conn.fetch(_LIST, projection, limit)
        return count, [ParkedEvent(**dict(r)) for r in rows]


async def replay_parked(
    pool: asyncpg.Pool, *, projection: str | None = None, limit: int = 10_000
) -> ReplayOutcome:
    """Apply up to ``limit`` parked events again, oldest first; see the module doc."""
    projections = {p.name: p for p in all_projections()}
    replayed = 0
    still: list[ParkedEvent] = []
    async with pool.acquire() as conn:
        ids = [r["id"] for r in await conn.fetch(_IDS, projection, limit)]
        for parked_id in ids:
            async with conn.transaction():
                row = await conn.fetchrow(_TAKE, parked_id)
                if row is None:  # replayed meanwhile, or taken by another replay
                    continue
                error = await _apply_again(conn, projections[row["projection"]], row)
                if error is None:
                    await conn.execute("DELETE FROM parked_events WHERE id = $1", parked_id)
                    replayed += 1
                    continue
                await conn.execute(
                    "UPDATE parked_events SET error = $2 WHERE id = $1", parked_id, error
                )
                still.append(_parked(row, error))
    return ReplayOutcome(replayed, still)


async def _apply_again(
    conn: asyncpg.Connection, projection: Projection, row: asyncpg.Record
) -> str | None:
    """The error if the event still cannot be applied; None once its effect is written."""
    raw = row["headers"]  # jsonb: text unless the pool decodes it
    headers: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    try:
        event = decode_stored(row["subject"], row["payload"], headers, row["sequence"])
    except DecodeError as exc:
        return str(exc)
    # a rebuild's switch must not drop the version under us (as for a live batch)
    await take_switch_locks(conn, [Binding(projection)])
    try:
        async with conn.transaction():  # a savepoint: a failure undoes this event only
            refusals = await projection.apply(conn, row["version"], [event])
    except Exception as exc:
        if not is_poison_error(exc):
            raise
        return f"{type(exc).__name__}: {exc}"
    return refusals[0].error if refusals else None


def _parked(row: asyncpg.Record, error: str) -> ParkedEvent:
    return ParkedEvent(
        projection=row["projection"],
        version=row["version"],
        partition=row["partition"],
        sequence=row["sequence"],
        subject=row["subject"],
        event_type=row["event_type"],
        error=error,
        parked_at=row["parked_at"],
    )
