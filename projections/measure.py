"""Measuring the projector: catch-up speed from an empty read model, lag at a steady load.

Not a benchmark suite (that is issue 6's), a quick, honest figure a deployment can take
on its own servers. The caller (the ``projections measure`` command) provides a scratch
stream, a scratch database and an `Append` through the real event store.

- `measure_catch_up`: the stream is loaded, the read models are empty; a projector
  starts and the clock stops when every event has been committed into all read models.
- `measure_lag`: a projector runs, caught up; sessions are appended at a fixed rate of
  events per second (one event per command, as the orchestrator does); an event's lag is
  the time from its append being acknowledged to the commit of the batch holding it, as
  the projector reports it. Producer and projector share this process (and its CPU).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from nats.aio.client import Client as NatsClient

from events.subjects import partition_of
from projections.batch import BatchOutcome
from projections.checkpoints import Binding
from projections.projector import CommitObserver, Projector, ProjectorSettings
from projections.read_models import all_projections
from projections.source import EventSource
from projections.workload import Append, drive, lifecycle, session_ids

__all__ = ["CatchUp", "Lag", "load_sessions", "measure_catch_up", "measure_lag"]

_START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CatchUp:
    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@dataclass(frozen=True, slots=True)
class Lag:
    target_rate: int
    achieved_rate: float
    events: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def load_sessions(append: Append, sessions: int, *, seed: int = 1) -> int:
    """Append ``sessions`` realistic lifecycles; return the number of events."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    lifecycles = [lifecycle(rng, sid, _START) for sid in session_ids(f"m{seed}_", sessions)]
    await drive(append, lifecycles, concurrency=64)
    return sum(len(events) for events in lifecycles)


@contextlib.asynccontextmanager
async def _running(
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    settings: ProjectorSettings,
    observer: CommitObserver,
) -> AsyncIterator[Projector]:
    projector = Projector(
        nc=nc,
        pool=pool,
        dsn=dsn,
        source=source,
        bindings=[Binding(p) for p in all_projections()],
        settings=settings,
        on_commit=observer,
    )
    task = asyncio.create_task(projector.run())
    try:
        yield projector
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def measure_catch_up(
    *,
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    events: int,
    settings: ProjectorSettings,
    timeout: float = 600.0,
) -> CatchUp:
    """Time a projector bringing empty read models up to ``events`` stored events."""
    done = asyncio.Event()
    committed = 0

    def observe(outcome: BatchOutcome, _: float) -> None:
        nonlocal committed
        committed += outcome.messages
        if committed >= events:
            done.set()

    started = time.monotonic()
    async with _running(nc, pool, dsn, source, settings, observe):
        await asyncio.wait_for(done.wait(), timeout)
    return CatchUp(events, time.monotonic() - started)


class _LagProbe:
    """Matches commits to appends, per partition, in sequence order."""

    def __init__(self) -> None:
        self.waiting: dict[int, deque[tuple[int, float]]] = defaultdict(deque)
        self.lags: list[float] = []
        self.idle = asyncio.Event()

    def appended(self, partition: int, sequence: int, at: float) -> None:
        self.waiting[partition].append((sequence, at))
        self.idle.clear()

    def committed(self, outcome: BatchOutcome, at: float) -> None:
        for partition, position in outcome.positions.items():
            queue = self.waiting[partition]
            while queue and queue[0][0] <= position:
                self.lags.append(at - queue.popleft()[1])
        if not any(self.waiting.values()):
            self.idle.set()


async def _produce(
    append: Append,
    probe: _LagProbe,
    *,
    rate: int,
    seconds: float,
    partitions: int,
) -> int:
    """Append at ``rate`` events/s for ``seconds``; return how many were appended."""
    rng = random.Random(rate)  # noqa: S311 - test data, not secrets
    ids = iter(session_ids(f"lag{rate}_", 10**7))
    tokens: asyncio.Queue[None] = asyncio.Queue()
    appended = 0

    async def worker() -> None:
        nonlocal appended
        while True:
            sid = next(ids)
            version = 0
            for event in lifecycle(rng, sid, _START):
                await tokens.get()
                version = await append(sid, [event], version)
                probe.appended(partition_of(sid, partitions), version, time.monotonic())
                appended += 1

    workers = [asyncio.create_task(worker()) for _ in range(max(8, rate // 50))]
    started = time.monotonic()
    issued = 0
    try:
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) - issued
            for _ in range(due):
                tokens.put_nowait(None)
            issued += max(0, due)
            await asyncio.sleep(0.002)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return appended


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_lag(
    *,
    nc: NatsClient,
    pool: asyncpg.Pool,
    dsn: str,
    source: EventSource,
    append: Append,
    rate: int,
    seconds: float,
    settings: ProjectorSettings,
) -> Lag:
    """Lag percentiles at a steady ``rate`` of appended events per second."""
    probe = _LagProbe()
    async with _running(nc, pool, dsn, source, settings, probe.committed) as projector:
        await asyncio.wait_for(projector.wait_owning(source.partitions), 30)
        appended = await _produce(
            append, probe, rate=rate, seconds=seconds, partitions=source.partitions
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(probe.idle.wait(), 30)
    lags = [lag * 1000 for lag in probe.lags] or [0.0]
    return Lag(
        target_rate=rate,
        achieved_rate=appended / seconds,
        events=len(probe.lags),
        p50_ms=statistics.median(lags),
        p99_ms=_percentile(lags, 0.99),
        max_ms=max(lags),
    )
