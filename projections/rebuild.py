"""Rebuild one projection from the first event, beside the version serving reads, then switch.

    1. version N+1 gets fresh tables (``projection_create_tables``, the newest migration's
       shape) and checkpoints at 0; ``projection_versions.building_version`` records it;
    2. a projector named ``rebuild:<name>``, pinned to N+1, fills them from sequence 1
       while the live projector keeps writing version N and reads keep using N;
    3. once N+1 has passed the stream's head as it was when the fill began, and trails
       what N has applied by at most ``SWITCH_GAP`` events (under load the head keeps
       moving, so "at the head" alone may never be seen), its projector stops and one
       transaction switches: it takes the projection's switch lock exclusively (waiting
       for the live batches in flight and holding new ones back), applies to N+1 whatever
       version N applied since (read from the stream, at most about ``SWITCH_GAP``
       events), so that N+1's checkpoints are at or past N's in every partition, re-points
       the view and ``projection_versions`` to N+1, and commits;
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

from projections.batch import BatchOutcome, PersonalData, apply_batch
from projections.checkpoints import Binding, ensure_rows, read_positions
from projections.errors import RebuildError
from projections.keys import class_id, switch_key
from projections.projector import Projector, ProjectorSettings
from projections.read_models import PROJECTION_NAMES, projection
from projections.source import EventSource, partition_heads, read_range

__all__ = ["SWITCH_GAP", "RebuildProgress", "RebuildResult", "rebuild"]

SWITCH_GAP = 1000
"""events the fill may trail version N by when it stops; the switch applies them while it
holds the live projector back"""


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


@dataclass(frozen=True, slots=True)
class _Target:
    """When the fill may stop: past ``heads`` and at most ``gap`` events behind version N."""

    name: str
    old: int
    new: int
    heads: dict[int, int]
    partitions: int
    gap: int

    async def reached(self, pool: asyncpg.Pool) -> bool:
        partitions = list(range(self.partitions))
        async with pool.acquire() as conn:
            built = await read_positions(conn, {self.name: self.new}, partitions)
            live = await read_positions(conn, {self.name: self.old}, partitions)
        position = {p: built.get((self.name, p), 0) for p in partitions}
        if any(position[p] < self.heads.get(p, 0) for p in partitions):
            return False
        behind = sum(max(0, live.get((self.name, p), 0) - position[p]) for p in partitions)
        return behind <= self.gap


async def _stream_size(nc: NatsClient, source: EventSource) -> int:
    info = await nc.jetstream().stream_info(source.stream)
    return int(info.state.messages)


@dataclass
class _Filling:
    applied: int = 0

    def observe(self, outcome: BatchOutcome, _: float) -> None:
        self.applied += outcome.messages


async def _fill(  # noqa: PLR0913 - keywords of the projector it runs
    target: _Target,
    *,
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    settings: ProjectorSettings,
    progress: ProgressCallback,
    poll: float,
    personal: PersonalData | None,
) -> int:
    filling = _Filling()
    projector = Projector(
        nc=nc,
        pool=pool,
        dsn=dsn,
        source=source,
        bindings=[Binding(projection(target.name), pinned=target.new)],
        settings=settings,
        on_commit=filling.observe,
        personal=personal,
    )
    task = asyncio.create_task(projector.run(), name=f"rebuild-{target.name}")
    try:
        while not await target.reached(pool):
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
    personal: PersonalData | None = None,
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
                    await apply_batch(conn, [binding], messages, personal)
                    gap += len(messages)
        await conn.execute("SELECT projection_activate($1, $2)", name, new)
    return gap


async def rebuild(  # noqa: PLR0913 - every option is a keyword with a default
    name: str,
    *,
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    batch_size: int = 500,
    progress: ProgressCallback | None = None,
    poll: float = 0.2,
    personal: PersonalData | None = None,
) -> RebuildResult:
    """Rebuild projection ``name`` and switch reads to it (see module doc). ``personal``
    opens sealed personal data (what was forgotten comes back erased)."""
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
        heads = await partition_heads(nc, source)
        target = _Target(name, old, new, heads, source.partitions, SWITCH_GAP)
        applied = await _fill(
            target, nc=nc, pool=pool, dsn=dsn, source=source, settings=settings,
            progress=report, poll=poll, personal=personal,
        )  # fmt: skip
        total = await _stream_size(nc, source)
        report(RebuildProgress("switching", applied, total))
        switch_started = time.monotonic()
        async with pool.acquire() as conn:
            gap = await _switch(conn, nc, source, name, old, new, personal)
            switch_seconds = time.monotonic() - switch_started
            await conn.execute("SELECT projection_drop_tables($1, $2)", name, old)
        report(RebuildProgress("done", applied + gap, total))
    return RebuildResult(
        name, old, new, applied + gap, time.monotonic() - started, switch_seconds, gap
    )
