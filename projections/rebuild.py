"""Rebuild one projection from the first event, beside the version serving reads, then switch.

    1. version N+1 gets fresh tables (``projection_create_tables``, the newest migration's
       shape) and checkpoints at 0; ``projection_versions.building_version`` records it;
    2. a projector named ``rebuild:<name>``, pinned to N+1, fills them from sequence 1
       while the live projector keeps writing version N and reads keep using N;
    3. once N+1 has reached the stream's head, its projector stops and one transaction
       switches: it takes the projection's switch lock exclusively (waiting for the live
       batches in flight and holding new ones back), applies to N+1 whatever version N
       applied since (read from the stream, usually a handful of events), so that N+1's
       checkpoints are at or past N's in every partition, re-points the view and
       ``projection_versions`` to N+1, and commits;
    4. the live projector's next batch reads the new active version and continues from
       N+1's checkpoints; version N's tables, checkpoints and parked events are dropped.

No event is missing after the switch: every event is either at or below N+1's checkpoint
(hence applied to N+1) or above it (hence still ahead of the live projector, which
skips nothing above a checkpoint). One rebuild per projection at a time (a session
advisory lock); a rebuild that died leaves a building version the next one drops first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg
from nats.aio.client import Client as NatsClient

from projections.batch import BatchOutcome, apply_batch
from projections.checkpoints import Binding, ensure_rows, read_positions
from projections.errors import RebuildError
from projections.keys import class_id, switch_key
from projections.projector import Projector, ProjectorSettings
from projections.read_models import PROJECTION_NAMES, projection
from projections.source import EventSource, partition_heads, read_range

__all__ = ["RebuildProgress", "RebuildResult", "rebuild"]


@dataclass(frozen=True, slots=True)
class RebuildProgress:
    phase: str
    """``filling``, ``switching`` or ``done``"""
    applied: int
    total: int


@dataclass(frozen=True, slots=True)
class RebuildResult:
    projection: str
    old_version: int
    new_version: int
    events: int
    seconds: float
    switch_seconds: float
    gap_events: int
    """events applied inside the switch transaction (written to N since N+1 caught up)"""


ProgressCallback = Callable[[RebuildProgress], None]


@contextlib.asynccontextmanager
async def _exclusive(dsn: str, name: str) -> AsyncIterator[None]:
    conn = await asyncpg.connect(dsn)
    try:
        key = (class_id(f"rebuild:{name}"), 0)
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *key):
            raise RebuildError(f"a rebuild of {name} is already running")
        yield
    finally:
        await conn.close()


async def _prepare(conn: asyncpg.Connection, name: str, partitions: int) -> tuple[int, int]:
    """Drop a dead rebuild's leftovers, create version N+1; return (N, N+1)."""
    row = await conn.fetchrow(
        "SELECT active_version, building_version FROM projection_versions WHERE projection = $1",
        name,
    )
    if row is None:
        raise RebuildError(f"projection {name} has no active version: run migrate first")
    old, stale = int(row["active_version"]), row["building_version"]
    if stale is not None:
        await conn.execute("SELECT projection_drop_tables($1, $2)", name, stale)
    new = old + 1
    async with conn.transaction():
        await conn.execute("SELECT projection_drop_tables($1, $2)", name, new)
        await conn.execute("SELECT projection_create_tables($1, $2)", name, new)
        await conn.execute(
            "UPDATE projection_versions SET building_version = $2 WHERE projection = $1",
            name,
            new,
        )
        await ensure_rows(conn, {name: new}, range(partitions))
    return old, new


async def _reached_head(
    pool: asyncpg.Pool, nc: NatsClient, source: EventSource, name: str, version: int
) -> bool:
    heads = await partition_heads(nc, source)
    async with pool.acquire() as conn:
        positions = await read_positions(conn, {name: version}, list(heads))
    return all(positions.get((name, p), 0) >= head for p, head in heads.items())


async def _stream_size(nc: NatsClient, source: EventSource) -> int:
    info = await nc.jetstream().stream_info(source.stream)
    return int(info.state.messages)


@dataclass
class _Filling:
    applied: int = 0

    def observe(self, outcome: BatchOutcome, _: float) -> None:
        self.applied += outcome.messages


async def _fill(  # noqa: PLR0913 - the rebuild's dependencies, passed through
    name: str,
    version: int,
    *,
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    settings: ProjectorSettings,
    progress: ProgressCallback,
    poll: float,
) -> int:
    filling = _Filling()
    projector = Projector(
        nc=nc,
        pool=pool,
        dsn=dsn,
        source=source,
        bindings=[Binding(projection(name), pinned=version)],
        settings=settings,
        on_commit=filling.observe,
    )
    task = asyncio.create_task(projector.run(), name=f"rebuild-{name}")
    try:
        while not await _reached_head(pool, nc, source, name, version):
            if task.done():
                task.result()
            progress(RebuildProgress("filling", filling.applied, await _stream_size(nc, source)))
            await asyncio.sleep(poll)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return filling.applied


async def _switch(
    conn: asyncpg.Connection,
    nc: NatsClient,
    source: EventSource,
    name: str,
    old: int,
    new: int,
) -> int:
    """The switch transaction (see module doc, step 3); returns the gap events applied."""
    gap = 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", *switch_key(name))
        partitions = list(range(source.partitions))
        live = await read_positions(conn, {name: old}, partitions)
        built = await read_positions(conn, {name: new}, partitions)
        binding = Binding(projection(name), pinned=new)
        for partition in partitions:
            start, stop = built.get((name, partition), 0), live.get((name, partition), 0)
            if stop > start:
                messages = await read_range(nc, source, partition, start + 1, stop)
                if messages:
                    await apply_batch(conn, [binding], messages)
                    gap += len(messages)
        await conn.execute("SELECT projection_activate($1, $2)", name, new)
    return gap


async def rebuild(
    name: str,
    *,
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    batch_size: int = 500,
    progress: ProgressCallback | None = None,
    poll: float = 0.2,
) -> RebuildResult:
    """Rebuild projection ``name`` and switch reads to it (see module doc)."""
    if name not in PROJECTION_NAMES:
        raise RebuildError(f"no projection {name!r}; choose one of {', '.join(PROJECTION_NAMES)}")
    report = progress or (lambda _: None)
    started = time.monotonic()
    async with _exclusive(dsn, name):
        async with pool.acquire() as conn:
            old, new = await _prepare(conn, name, source.partitions)
        settings = ProjectorSettings(
            name=f"rebuild:{name}", batch_size=batch_size, claim_interval=0.2
        )
        applied = await _fill(
            name, new, nc=nc, pool=pool, dsn=dsn, source=source, settings=settings,
            progress=report, poll=poll,
        )  # fmt: skip
        total = await _stream_size(nc, source)
        report(RebuildProgress("switching", applied, total))
        switch_started = time.monotonic()
        async with pool.acquire() as conn:
            gap = await _switch(conn, nc, source, name, old, new)
            switch_seconds = time.monotonic() - switch_started
            await conn.execute("SELECT projection_drop_tables($1, $2)", name, old)
        report(RebuildProgress("done", applied + gap, total))
    return RebuildResult(
        name, old, new, applied + gap, time.monotonic() - started, switch_seconds, gap
    )
