"""Measuring the projector: catch-up speed from an empty read model, lag at a steady load.

Not a benchmark suite (that is issue 6's), a quick, honest figure a deployment can take
on its own servers. The caller (``python -m bench projections``) provides a scratch
stream, a scratch database and an `Append` through the real event store.

- `measure_catch_up`: the stream is loaded, the read models are empty; a projector
  starts (in this process) and the clock stops when every event has been committed into
  all read models. `observe_catch_up` does the same for projector processes the caller
  starts (several, to measure scale-out), timed from their first commit.
- `measure_lag`: a projector runs in another process, caught up; sessions are appended
  here at a fixed rate of events per second (one event per command, as the orchestrator
  does); an event's lag is the time from its append being acknowledged to the moment
  the commit of the batch holding it is announced (``projection_commits`` NOTIFY, sent
  by Postgres when the transaction commits).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import statistics
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
from nats.aio.client import Client as NatsClient

from bench.workload import Append, drive, lifecycle, session_ids
from events.subjects import partition_of
from projections.batch import BatchOutcome, PersonalData
from projections.checkpoints import COMMITS_CHANNEL, Binding, parse_commit_notice
from projections.projector import CommitObserver, Projector, ProjectorSettings
from projections.read_models import all_projections
from projections.source import EventSource, partition_heads

__all__ = [
    "CatchUp",
    "Lag",
    "load_sessions",
    "measure_catch_up",
    "measure_lag",
    "observe_catch_up",
]

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
    personal: PersonalData | None = None,
) -> AsyncIterator[Projector]:
    projector = Projector(
        nc=nc,
        pool=pool,
        dsn=dsn,
        source=source,
        bindings=[Binding(p) for p in all_projections()],
        settings=settings,
        on_commit=observer,
        personal=personal,
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
    personal: PersonalData | None = None,
) -> CatchUp:
    """Time a projector bringing empty read models up to ``events`` stored events
    (``personal``: opening sealed customers on the way, as `up` does)."""
    done = asyncio.Event()
    committed = 0

    def observe(outcome: BatchOutcome, _: float) -> None:
        nonlocal committed
        committed += outcome.messages
        if committed >= events:
            done.set()

    started = time.monotonic()
    async with _running(nc, pool, dsn, source, settings, observe, personal):
        await asyncio.wait_for(done.wait(), timeout)
    return CatchUp(events, time.monotonic() - started)


async def observe_catch_up(
    *,
    nc: NatsClient,
    dsn: str,
    source: EventSource,
    events: int,
    start: Callable[[], AbstractAsyncContextManager[object]],
    timeout: float = 600.0,
) -> CatchUp:
    """Time projectors in other processes (``start`` runs them) catching up from empty.

    The clock runs from their first commit to the commit that reaches every partition's
    head, both observed as ``projection_commits`` notices: process start-up is left out.
    """
    heads = await partition_heads(nc, source)
    reached: dict[int, int] = defaultdict(int)
    first: list[float] = []
    done = asyncio.Event()

    def notice(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        first.append(first[0] if first else time.monotonic())
        for name, _version, partition, position in parse_commit_notice(str(payload)):
            if name == "timeline":
                reached[partition] = max(reached[partition], position)
        if all(reached[p] >= head for p, head in heads.items()):
            done.set()

    listener = await asyncpg.connect(dsn)
    await listener.add_listener(COMMITS_CHANNEL, notice)
    try:
        async with start():
            await asyncio.wait_for(done.wait(), timeout)
            finished = time.monotonic()
    finally:
        await listener.close()
    return CatchUp(events, finished - first[0])


class _LagProbe:
    """Matches commits to appends, per partition, in sequence order."""

    def __init__(self) -> None:
        self.waiting: dict[int, deque[tuple[int, float]]] = defaultdict(deque)
        self.lags: list[float] = []
        self.committed_up_to: dict[int, int] = defaultdict(int)
        self.idle = asyncio.Event()

    def appended(self, partition: int, sequence: int, at: float) -> None:
        if sequence <= self.committed_up_to[partition]:
            self.lags.append(0.0)  # committed before the producer got back to record it
            return
        self.waiting[partition].append((sequence, at))
        self.idle.clear()

    def committed(self, positions: Mapping[int, int], at: float) -> None:
        for partition, position in positions.items():
            self.committed_up_to[partition] = max(self.committed_up_to[partition], position)
            queue = self.waiting[partition]
            while queue and queue[0][0] <= position:
                self.lags.append(at - queue.popleft()[1])
        if not any(self.waiting.values()):
            self.idle.set()

    def notice(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        """asyncpg listener: a projector committed; its timeline checkpoints tell how far."""
        at = time.monotonic()
        entries = parse_commit_notice(str(payload))
        self.committed({p: pos for name, _, p, pos in entries if name == "timeline"}, at)


async def _produce(
    append: Append,
    probe: _LagProbe,
    *,
    rate: int,
    seconds: float,
    partitions: int,
) -> int:
    """Append at ``rate`` events/s for ``seconds``; return how many were appended."""
    rng = random.Random()  # noqa: S311 - test data, not secrets
    prefix = f"lag{rate}_{rng.randrange(10**9)}_"
    ids = (f"{prefix}{n:07d}" for n in itertools.count())
    go, stop = True, False
    tokens: asyncio.Queue[bool] = asyncio.Queue()  # go: append one event; stop: return
    appended = 0

    async def worker() -> None:
        nonlocal appended
        while True:
            sid = next(ids)
            version = 0
            for event in lifecycle(rng, sid, _START):
                if not await tokens.get():
                    return
                version = await append(sid, [event], version)
                probe.appended(partition_of(sid, partitions), version, time.monotonic())
                appended += 1

    workers = [asyncio.create_task(worker()) for _ in range(max(8, rate // 50))]
    started = time.monotonic()
    issued = 0
    while (elapsed := time.monotonic() - started) < seconds:
        due = int(elapsed * rate) - issued
        for _ in range(due):
            tokens.put_nowait(go)
        issued += max(0, due)
        await asyncio.sleep(0.002)
    while not tokens.empty():
        tokens.get_nowait()
    for _ in workers:
        tokens.put_nowait(stop)
    await asyncio.gather(*workers)
    return appended


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def measure_lag(
    *,
    dsn: str,
    source: EventSource,
    append: Append,
    rate: int,
    seconds: float,
    warmup: float = 2.0,
) -> Lag:
    """Lag percentiles at a steady ``rate`` of appended events per second.

    A projector must be running on ``source`` and ``dsn`` (another process, so that the
    load generator here does not share its CPU); commits are observed as its
    ``projection_commits`` notifications. The first ``warmup`` seconds are not recorded.
    """
    probe = _LagProbe()
    listener = await asyncpg.connect(dsn)
    await listener.add_listener(COMMITS_CHANNEL, probe.notice)
    try:
        await _produce(append, probe, rate=rate, seconds=warmup, partitions=source.partitions)
        await asyncio.wait_for(probe.idle.wait(), 60)
        probe.lags.clear()
        appended = await _produce(
            append, probe, rate=rate, seconds=seconds, partitions=source.partitions
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(probe.idle.wait(), 30)
    finally:
        await listener.close()
    lags = [lag * 1000 for lag in probe.lags] or [0.0]
    return Lag(
        target_rate=rate,
        achieved_rate=appended / seconds,
        events=len(probe.lags),
        p50_ms=statistics.median(lags),
        p99_ms=_percentile(lags, 0.99),
        max_ms=max(lags),
    )
