"""Bookkeeping of the projections: active versions, checkpoints, parked events.

A checkpoint is ``(projection, version, partition) -> position``: the last stream
sequence whose effect is in that version's tables. It only moves forward, and only in
the transaction that wrote the effect (see `projections.batch`).

A `Binding` says which version of a projection a projector writes: the active one
(``pinned=None``, the live projector, which follows a rebuild's switch) or a fixed one
(a rebuild filling its new version).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from projections.keys import switch_key
from projections.read_models import Projection
from projections.read_models.sql import Statement

__all__ = [
    "COMMITS_CHANNEL",
    "Binding",
    "Position",
    "active_versions",
    "advance",
    "begin_batch",
    "ensure_rows",
    "parse_commit_notice",
    "read_positions",
    "take_switch_locks",
]

Position = dict[tuple[str, int], int]
"""(projection name, partition) -> checkpoint"""


@dataclass(frozen=True, slots=True)
class Binding:
    projection: Projection
    pinned: int | None = None

    @property
    def name(self) -> str:
        return self.projection.name


async def active_versions(conn: asyncpg.Connection, bindings: Sequence[Binding]) -> dict[str, int]:
    """The version each binding writes now: its pinned one, else the active one."""
    followed = [b.name for b in bindings if b.pinned is None]
    found: dict[str, int] = {}
    if followed:
        rows = await conn.fetch(
            "SELECT projection, active_version FROM projection_versions "
            "WHERE projection = ANY($1::text[])",
            followed,
        )
        found = {row["projection"]: row["active_version"] for row in rows}
    versions = {b.name: b.pinned if b.pinned is not None else found.get(b.name) for b in bindings}
    missing = [name for name, version in versions.items() if version is None]
    if missing:
        raise LookupError(f"no active version of {missing}: run `checkout-orchestrator migrate`")
    return {name: v for name, v in versions.items() if v is not None}


async def take_switch_locks(conn: asyncpg.Connection, bindings: Sequence[Binding]) -> None:
    """Shared transaction locks that keep a rebuild's switch out while this batch runs."""
    keys = sorted(switch_key(b.name) for b in bindings if b.pinned is None)
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock_shared(k.c, k.o) "
            "FROM unnest($1::int4[], $2::int4[]) AS k(c, o)",
            [c for c, _ in keys],
            [o for _, o in keys],
        )


async def ensure_rows(
    conn: asyncpg.Connection, versions: Mapping[str, int], partitions: Iterable[int]
) -> None:
    """Create missing checkpoint rows at position 0."""
    names, vers, parts = [], [], []
    for partition in partitions:
        for name, version in versions.items():
            names.append(name)
            vers.append(version)
            parts.append(partition)
    await conn.execute(
        "INSERT INTO projection_checkpoints (projection, version, partition) "
        "SELECT * FROM unnest($1::text[], $2::int4[], $3::int4[]) "
        "ON CONFLICT DO NOTHING",
        names,
        vers,
        parts,
    )


_SELECT = (
    "SELECT c.projection, c.partition, c.position FROM projection_checkpoints c "
    "JOIN unnest($1::text[], $2::int4[]) AS w(projection, version) "
    "ON c.projection = w.projection AND c.version = w.version "
    "WHERE c.partition = ANY($3::int4[])"
)


async def read_positions(
    conn: asyncpg.Connection, versions: Mapping[str, int], partitions: Sequence[int]
) -> Position:
    rows = await conn.fetch(_SELECT, list(versions), list(versions.values()), list(partitions))
    return {(row["projection"], row["partition"]): row["position"] for row in rows}


COMMITS_CHANNEL = "projection_commits"
"""Postgres NOTIFY channel: each batch announces its new checkpoints when it commits."""

_ADVANCE = """
WITH moved AS (
    UPDATE projection_checkpoints c SET position = u.position, updated_at = clock_timestamp()
    FROM unnest($1::text[], $2::int4[], $3::int4[], $4::int8[])
        AS u(projection, version, partition, position)
    WHERE c.projection = u.projection AND c.version = u.version
      AND c.partition = u.partition AND c.position < u.position
    RETURNING c.projection, c.version, c.partition, c.position
)
SELECT pg_notify('projection_commits', string_agg(
    projection || ':' || version || ':' || partition || ':' || position, ';'))
FROM moved
HAVING count(*) > 0
"""


def parse_commit_notice(payload: str) -> list[tuple[str, int, int, int]]:
    """(projection, version, partition, position) entries of a commit notification."""
    entries = []
    for item in payload.split(";"):
        name, version, partition, position = item.rsplit(":", 3)
        entries.append((name, int(version), int(partition), int(position)))
    return entries


def advance(versions: Mapping[str, int], moved: Mapping[tuple[str, int], int]) -> Statement | None:
    """The statement that sets the checkpoints that moved and announces them on
    `COMMITS_CHANNEL` (delivered to listeners only if the batch's transaction commits);
    the batch sends it with its writes."""
    if not moved:
        return None
    keys = list(moved)
    return Statement(
        _ADVANCE,
        (
            [name for name, _ in keys],
            [versions[name] for name, _ in keys],
            [partition for _, partition in keys],
            [moved[key] for key in keys],
        ),
    )


async def begin_batch(
    conn: asyncpg.Connection, bindings: Sequence[Binding], partitions: Sequence[int]
) -> tuple[dict[str, int], Position]:
    """In one round trip (``projection_begin_batch``): the switch locks of the followed
    projections (`take_switch_locks`), the version each binding writes
    (`active_versions`) and the partitions' checkpoints, created when missing and row-locked
    until the transaction ends."""
    keys = sorted(switch_key(b.name) for b in bindings if b.pinned is None)
    pinned = [b for b in bindings if b.pinned is not None]
    rows = await conn.fetch(
        "SELECT * FROM projection_begin_batch($1, $2, $3, $4, $5, $6)",
        [c for c, _ in keys],
        [o for _, o in keys],
        [b.name for b in bindings if b.pinned is None],
        [b.name for b in pinned],
        [b.pinned for b in pinned],
        list(partitions),
    )
    versions = {row["projection"]: row["version"] for row in rows}
    positions = {(row["projection"], row["partition"]): row["position"] for row in rows}
    return versions, positions
