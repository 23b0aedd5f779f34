"""How far the projections are: checkpoints against the stream, owners, parked events.

`status_report` gathers, for every projection's active version (and one being built),
each partition's checkpoint, the partition's last stream sequence (its head), the
number of events still to apply (lag, counted by JetStream from the checkpoint on), the
worker owning it, and the parked events. `wait_caught_up` waits, bounded, until every
active checkpoint has reached its partition's head: tests and tools use it instead of
sleeping.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client as NatsClient

from projections.ownership import owners
from projections.parked import ParkedEvent
from projections.source import EventSource, partition_heads, pending_counts

__all__ = [
    "CheckpointStatus",
    "ParkedEvent",
    "StatusReport",
    "caught_up",
    "status_report",
    "wait_caught_up",
]


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    projection: str
    version: int
    active: bool
    partition: int
    position: int
    head: int
    pending: int | None
    owner_pid: int | None


@dataclass(frozen=True, slots=True)
class StatusReport:
    checkpoints: list[CheckpointStatus]
    parked: list[ParkedEvent]

    @property
    def lag(self) -> int:
        """Events not yet applied, summed over the active versions' partitions."""
        return sum(c.pending or 0 for c in self.checkpoints if c.active)


_CHECKPOINTS = """
SELECT c.projection, c.version, c.partition, c.position,
       c.version = v.active_version AS active
FROM projection_checkpoints c
JOIN projection_versions v ON v.projection = c.projection
WHERE c.version = v.active_version OR c.version = v.building_version
ORDER BY c.projection, c.version, c.partition
"""

_ACTIVE = """
SELECT c.partition, min(c.position) AS position
FROM projection_checkpoints c
JOIN projection_versions v ON v.projection = c.projection AND v.active_version = c.version
GROUP BY c.partition
"""

_PARKED = """
SELECT p.projection, p.version, p.partition, p.sequence, p.subject, p.event_type, p.error,
       p.parked_at
FROM parked_events p
JOIN projection_versions v ON v.projection = p.projection
WHERE p.version IN (v.active_version, v.building_version)
ORDER BY p.sequence, p.projection
LIMIT $1
"""


async def status_report(
    conn: asyncpg.Connection,
    nc: NatsClient,
    source: EventSource,
    *,
    projector: str = "live",
    parked_limit: int = 100,
) -> StatusReport:
    rows = await conn.fetch(_CHECKPOINTS)
    heads = await partition_heads(nc, source)
    owned = await owners(conn, projector)
    pending = await pending_counts(nc, source, {(r["partition"], r["position"]) for r in rows})
    checkpoints = [
        CheckpointStatus(
            projection=row["projection"],
            version=row["version"],
            active=row["active"],
            partition=row["partition"],
            position=row["position"],
            head=heads.get(row["partition"], 0),
            pending=pending[(row["partition"], row["position"])],
            owner_pid=next(iter(owned.get(row["partition"], [])), None),
        )
        for row in rows
    ]
    parked = [ParkedEvent(**dict(row)) for row in await conn.fetch(_PARKED, parked_limit)]
    return StatusReport(checkpoints, parked)


async def caught_up(conn: asyncpg.Connection, nc: NatsClient, source: EventSource) -> bool:
    """Every active checkpoint of every partition is at the partition's head."""
    heads = await partition_heads(nc, source)
    rows = await conn.fetch(_ACTIVE)
    positions = {row["partition"]: row["position"] for row in rows}
    return all(positions.get(p, 0) >= head for p, head in heads.items())


async def wait_caught_up(
    pool: asyncpg.Pool,
    nc: NatsClient,
    source: EventSource,
    *,
    timeout: float = 30.0,
    poll: float = 0.05,
) -> float:
    """Wait until `caught_up`; return the seconds it took. `TimeoutError` past ``timeout``."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            async with pool.acquire() as conn:
                if await caught_up(conn, nc, source):
                    return time.monotonic() - started
            await asyncio.sleep(poll)
