"""The projector: owned partitions read in order, applied in batches, checkpointed.

One `Projector` is one worker process' share of a projector (``live`` for the read
models, ``rebuild:<name>`` during a rebuild). It runs until cancelled:

- every ``claim_interval`` it balances ownership (`projections.ownership`): it takes
  free partitions up to its fair share and gives back what exceeds it, so a second
  worker gets half the partitions and a dead worker's partitions move within seconds;
- per owned partition, a `PartitionReader` delivers the stream from the smallest
  checkpoint of that partition + 1;
- batches of up to ``batch_size`` buffered messages (after waiting up to ``batch_linger``
  for more when there are fewer) are committed with `projections.batch.apply_batch`:
  rows, parked events and checkpoints in one transaction. Up to ``appliers`` batches
  are in flight at once, over disjoint partitions: a partition in a batch being
  committed is in no other batch until that one ends, so its batches never overlap. A
  second batch only starts when the partitions free of the first hold a full batch (the
  projector is catching up): Python folds one batch while Postgres writes the
  other, and a steady flow stays one transaction at a time. A failed commit is retried
  with the same messages (safe: whatever committed is skipped), except for partitions
  no longer owned.

Per-session order holds because a session lives in one partition, which one reader
delivers in stream order and one transaction at a time applies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import asyncpg
from nats.aio.client import Client as NatsClient
from opentelemetry import trace
from opentelemetry.trace import Link, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from projections.batch import BatchOutcome, PersonalData, apply_batch
from projections.checkpoints import Binding, active_versions, ensure_rows, read_positions
from projections.ownership import Ownership, fair_share
from projections.source import EventSource, PartitionReader, ReaderSettings, StreamMessage

__all__ = ["CommitObserver", "Projector", "ProjectorSettings"]

log = logging.getLogger(__name__)

CommitObserver = Callable[[BatchOutcome, float], None]
"""Called after each commit with its outcome and the monotonic time of the commit."""

_MAX_LINKS = 16
_MAX_RETRY_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class ProjectorSettings:
    name: str = "live"
    batch_size: int = 1000
    batch_linger: float = 0.0
    appliers: int = 2
    """batch transactions in flight at once, over disjoint partitions, when catching up (a
    steady flow is one at a time): a second overlaps Python and Postgres work, catch-up
    ~1.3x on 2 cores (docs/performance.md)"""
    claim_interval: float = 1.0
    retry_delay: float = 0.2
    reader: ReaderSettings = field(default_factory=ReaderSettings)


def _span_context(message: StreamMessage) -> trace.SpanContext | None:
    parent = message.headers.get("traceparent")
    if not parent:
        return None
    carrier = {"traceparent": parent}
    context = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier))
    span_context = context.get_span_context()
    return span_context if span_context.is_valid else None


def _links(batch: Sequence[StreamMessage]) -> list[Link]:
    """Span links to the traces of the commands whose events this batch applies."""
    links: list[Link] = []
    for message in batch:
        if (span_context := _span_context(message)) is not None:
            links.append(Link(span_context))
            if len(links) >= _MAX_LINKS:
                break
    return links


def _close_traces(tracer: Tracer, batch: Sequence[StreamMessage], started: int) -> None:
    """One short span per sampled event, in the trace of the command that caused it: the
    trace of a checkout then reaches from its HTTP request to the read-model commit."""
    ended = time.time_ns()
    for message in batch:
        span_context = _span_context(message)
        if span_context is None or not span_context.trace_flags.sampled:
            continue
        parent = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
        attributes: dict[str, str | int] = {
            "checkout.event.type": message.event_type or "",
            "checkout.stream.sequence": message.sequence,
        }
        span = tracer.start_span(
            "projection.committed", context=parent, start_time=started, attributes=attributes
        )
        span.end(end_time=ended)


class Projector:
    def __init__(  # noqa: PLR0913 - every dependency is a keyword
        self,
        *,
        nc: NatsClient,
        pool: asyncpg.Pool,
        dsn: str,
        source: EventSource,
        bindings: Sequence[Binding],
        settings: ProjectorSettings = ProjectorSettings(),
        on_commit: CommitObserver | None = None,
        tracer: Tracer | None = None,
        personal: PersonalData | None = None,
    ) -> None:
        """``personal``: opens sealed personal data before the folds (docs/privacy.md);
        without it, sealed customers are kept as stored."""
        self._personal = personal
        self._nc = nc
        self._pool = pool
        self._source = source
        self._bindings = tuple(bindings)
        self._settings = settings
        self._on_commit = on_commit
        self._tracer = tracer or trace.get_tracer("projections")
        self._ownership = Ownership(dsn, settings.name)
        self._readers: dict[int, PartitionReader] = {}
        self._positions: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._in_flight: set[int] = set()
        """partitions in a batch being committed"""
        self._landed = asyncio.Event()
        self._failure: BaseException | None = None
        self._ownership_changed = asyncio.Event()
        self._cursor = 0

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._readers)

    @property
    def positions(self) -> Mapping[int, int]:
        """partition -> last stream sequence committed by this worker."""
        return dict(self._positions)

    async def wait_owning(self, count: int) -> None:
        """Return once this worker owns at least ``count`` partitions."""
        while len(self._readers) < count:
            self._ownership_changed.clear()
            await self._ownership_changed.wait()

    def caught_up(self) -> bool:
        """Every owned partition's reader saw its head and nothing waits to be applied."""
        readers = list(self._readers.values())
        return bool(readers) and all(r.caught_up and len(r) == 0 for r in readers)

    async def run(self) -> None:
        applier = asyncio.create_task(self._apply_loop(), name="applier")
        try:
            while True:
                await self._balance()
                if applier.done():
                    applier.result()  # an applier bug surfaces here instead of hanging
                await asyncio.sleep(self._settings.claim_interval)
        finally:
            applier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await applier
            for partition in list(self._readers):
                await self._drop(partition, release=False)
            await self._ownership.close()

    # -- ownership ------------------------------------------------------------------

    async def _balance(self) -> None:
        try:
            if not self._ownership.is_open:
                await self._ownership.open()
            workers = await self._ownership.workers()
            share = fair_share(self._source.partitions, workers)
            owned = sorted(self._readers)
            for partition in owned[share:]:
                await self._drop(partition, release=True)
            free = [p for p in range(self._source.partitions) if p not in self._readers]
            for partition in await self._ownership.claim(free, share - len(self._readers)):
                await self._adopt(partition)
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # a connection a crash left mid-operation: "another operation is in progress"
            asyncpg.InternalClientError,
            TimeoutError,
        ) as exc:
            log.warning("projector %s lost its ownership connection: %r", self._settings.name, exc)
            for partition in list(self._readers):
                await self._drop(partition, release=False)
            await self._ownership.close()

    async def _start_position(self, partition: int) -> int:
        async with self._pool.acquire() as conn:
            versions = await active_versions(conn, self._bindings)
            await ensure_rows(conn, versions, [partition])
            positions = await read_positions(conn, versions, [partition])
        return min(positions.values(), default=0)

    async def _adopt(self, partition: int) -> None:
        try:
            start = await self._start_position(partition)
        except BaseException:
            await self._ownership.release(partition)
            raise
        reader = PartitionReader(
            self._nc,
            self._source,
            partition,
            start + 1,
            wake=self._wake,
            settings=self._settings.reader,
        )
        self._positions[partition] = start
        self._readers[partition] = reader
        self._ownership_changed.set()
        reader.start()
        log.info("projector %s owns partition %s from %s", self._settings.name, partition, start)

    async def _drop(self, partition: int, *, release: bool) -> None:
        reader = self._readers.pop(partition)  # no batch takes from it any more
        self._ownership_changed.set()
        while partition in self._in_flight:  # it may be in a batch committing
            self._landed.clear()
            await self._landed.wait()
        await reader.close()
        if release and self._ownership.is_open:
            await self._ownership.release(partition)
        log.info("projector %s gave up partition %s", self._settings.name, partition)

    # -- applying -------------------------------------------------------------------

    def _free(self) -> list[PartitionReader]:
        """The readers with buffered messages whose partition is in no batch in flight."""
        return [r for p, r in self._readers.items() if len(r) and p not in self._in_flight]

    def _take(self) -> list[StreamMessage]:
        """Up to ``batch_size`` messages of the free partitions, from each in turn (a
        rotating start, so every partition leads in turn): a partition's messages in as
        few batches as possible, so that a second batch finds partitions of its own."""
        readers = self._free()
        if not readers:
            return []
        self._cursor = (self._cursor + 1) % len(readers)
        budget = self._settings.batch_size
        batch: list[StreamMessage] = []
        for reader in readers[self._cursor :] + readers[: self._cursor]:
            taken = reader.take(budget)
            batch += taken
            budget -= len(taken)
            if budget <= 0:
                break
        return batch

    def _buffered(self) -> int:
        return sum(len(r) for r in self._free())

    async def _apply_loop(self) -> None:
        committing: set[asyncio.Task[None]] = set()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._failure is not None:
                    raise self._failure
                await self._linger(committing)
                self._start_batches(committing)
        finally:
            for task in committing:
                task.cancel()
            await asyncio.gather(*committing, return_exceptions=True)

    async def _linger(self, committing: set[asyncio.Task[None]]) -> None:
        """With ``batch_linger``, wait that long for a full batch when nothing commits."""
        linger = self._settings.batch_linger
        if linger <= 0 or committing or self._buffered() >= self._settings.batch_size:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(linger):
                while self._buffered() < self._settings.batch_size:
                    self._wake.clear()
                    await self._wake.wait()

    def _start_batches(self, committing: set[asyncio.Task[None]]) -> None:
        """Commit what the free partitions hold: one batch, and while catching up, up to
        ``appliers`` over disjoint partitions."""
        limit = max(1, self._settings.appliers)
        while len(committing) < limit:
            if committing and self._buffered() < self._settings.batch_size:
                return  # a steady flow waits for the batch in flight: one at a time
            batch = self._take()
            if not batch:
                return
            partitions = frozenset(m.partition for m in batch)
            self._in_flight |= partitions
            task = asyncio.create_task(self._commit(batch))
            committing.add(task)

            def landed(task: asyncio.Task[None], partitions: frozenset[int] = partitions) -> None:
                committing.discard(task)
                self._in_flight -= partitions
                if not task.cancelled() and task.exception() is not None:
                    self._failure = task.exception()
                self._landed.set()
                self._wake.set()  # what arrived meanwhile for these partitions

            task.add_done_callback(landed)

    async def _commit(self, batch: list[StreamMessage]) -> None:
        delay = self._settings.retry_delay
        while batch := [m for m in batch if m.partition in self._readers]:
            try:
                outcome = await self._commit_once(batch)
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception:
                log.exception("projector %s: batch failed; retrying", self._settings.name)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
                continue
            committed_at = time.monotonic()
            for partition, position in outcome.positions.items():
                self._positions[partition] = max(self._positions.get(partition, 0), position)
            if self._on_commit is not None:
                self._on_commit(outcome, committed_at)
            return

    async def _commit_once(self, batch: list[StreamMessage]) -> BatchOutcome:
        attributes: dict[str, str | int] = {
            "projector": self._settings.name,
            "messages": len(batch),
            "partitions": len({m.partition for m in batch}),
        }
        started = time.time_ns()
        with self._tracer.start_as_current_span(
            "projection.apply", attributes=attributes, links=_links(batch)
        ):
            async with self._pool.acquire() as conn:
                outcome = await apply_batch(conn, self._bindings, batch, self._personal)
        _close_traces(self._tracer, batch, started)
        return outcome
