"""Append: sessions of 3 events through our event store, next to raw nats-py doing the
same I/O (the same subjects, payloads and headers, encoded before the clock starts).

Two shapes, because the server prices them very differently:
- ``batch``: the 3 events of a session as one ADR-50 atomic batch with the OCC
  expectation on the first message (what a create command appends);
- ``chain``: the 3 events as 3 single appends, each expecting the previous one's
  sequence (what the follow-up commands of a session append).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType
from ulid import ULID

from bench.workload import lifecycle
from events.catalog import CheckoutEvent
from events.codec import EncodedEvent, encode
from events.envelope import EventMetadata
from events.subjects import session_filter
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout, events_stream_config

__all__ = ["Shape", "Throughput", "ours", "raw", "sessions_of_three"]

Shape = Literal["batch", "chain"]
_START = datetime(2026, 1, 1, tzinfo=UTC)
_TIMEOUT = 30.0  # the store's own is 5 s; a raw loop must not fail where ours waits


@dataclass(frozen=True, slots=True)
class Throughput:
    events: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def sessions_of_three(count: int, *, tag: str, seed: int = 7) -> list[list[CheckoutEvent]]:
    """``count`` sessions' first three events (requested, routed, opened or failed)."""
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    sessions: list[list[CheckoutEvent]] = []
    while len(sessions) < count:
        events = lifecycle(rng, f"cs_{tag}{len(sessions):08d}", _START)
        if len(events) >= 3:
            sessions.append(events[:3])
    return sessions


def _metadata(count: int = 1) -> list[EventMetadata]:
    """One command's metadata for ``count`` events."""
    command = str(ULID())
    now = datetime.now(UTC)
    return [
        EventMetadata(
            event_id=str(ULID()),
            command_id=command,
            correlation_id=command,
            causation_id=command,
            occurred_at=now,
        )
        for _ in range(count)
    ]


async def _concurrently(
    items: Sequence[list[CheckoutEvent]],
    concurrency: int,
    one: Callable[[int, list[CheckoutEvent]], Awaitable[None]],
) -> float:
    queue = list(enumerate(items))
    queue.reverse()

    async def worker() -> None:
        while queue:
            await one(*queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def ours(
    store: EventStore,
    sessions: Sequence[list[CheckoutEvent]],
    *,
    shape: Shape,
    concurrency: int,
) -> Throughput:
    # the commands' metadata exists before the clock starts, as the raw loop's bytes do:
    # what is timed is the store's work (encode, expectation, publish, ack)
    prepared = [
        _metadata(len(events)) if shape == "batch" else [_metadata()[0] for _ in events]
        for events in sessions
    ]

    async def batch(index: int, events: list[CheckoutEvent]) -> None:
        await store.append(events[0].session_id, events, prepared[index], expected_version=0)

    async def chain(index: int, events: list[CheckoutEvent]) -> None:
        version = 0
        for event, metadata in zip(events, prepared[index], strict=True):
            result = await store.append(
                event.session_id, [event], [metadata], expected_version=version
            )
            version = result.last_sequence

    seconds = await _concurrently(sessions, concurrency, batch if shape == "batch" else chain)
    return Throughput(sum(map(len, sessions)), seconds)


def _encoded(layout: StreamLayout, events: list[CheckoutEvent], shape: Shape) -> list[EncodedEvent]:
    """The messages our store would send, minus the expectation of chained appends (known
    only once the previous append is acknowledged)."""
    metadata = _metadata(len(events))
    out = [
        encode(e, metadata[i], prefix=layout.events_prefix, partitions=layout.partitions, index=i)
        for i, e in enumerate(events)
    ]
    expectation_subject = session_filter(
        layout.events_prefix, events[0].session_id, layout.partitions
    )
    for i, message in enumerate(out):
        if shape == "batch" and i > 0:
            continue
        message.headers["Nats-Expected-Last-Subject-Sequence"] = "0"
        message.headers["Nats-Expected-Last-Subject-Sequence-Subject"] = expectation_subject
    if shape == "batch":
        batch_id = out[0].headers["Nats-Msg-Id"][:64]
        for position, message in enumerate(out, start=1):
            message.headers["Nats-Batch-Id"] = batch_id
            message.headers["Nats-Batch-Sequence"] = str(position)
        out[-1].headers["Nats-Batch-Commit"] = "1"
    return out


async def raw(
    nc: NatsClient,
    layout: StreamLayout,
    sessions: Sequence[list[CheckoutEvent]],
    *,
    shape: Shape,
    concurrency: int,
) -> Throughput:
    """The same appends as plain ``publish`` / ``request`` calls of nats-py."""
    prepared = [_encoded(layout, events, shape) for events in sessions]

    async def batch(index: int, _: list[CheckoutEvent]) -> None:
        *staged, commit = prepared[index]
        for m in staged:
            await nc.publish(m.subject, m.payload, headers=m.headers)
        ack = await nc.request(
            commit.subject, commit.payload, timeout=_TIMEOUT, headers=commit.headers
        )
        _check(ack.data)

    async def chain(index: int, _: list[CheckoutEvent]) -> None:
        version = 0
        for m in prepared[index]:
            m.headers["Nats-Expected-Last-Subject-Sequence"] = str(version)
            ack = await nc.request(m.subject, m.payload, timeout=_TIMEOUT, headers=m.headers)
            version = _check(ack.data)

    seconds = await _concurrently(sessions, concurrency, batch if shape == "batch" else chain)
    return Throughput(sum(map(len, sessions)), seconds)


async def raw_in_memory(
    nc: NatsClient,
    layout: StreamLayout,
    sessions: Sequence[list[CheckoutEvent]],
    *,
    concurrency: int,
) -> Throughput:
    """`raw` atomic batches on a memory-storage copy of the stream's configuration: what
    the server's on-disk staging of R1 file-storage batches costs."""
    js = nc.jetstream()
    memory = replace(
        layout,
        events_stream=f"{layout.events_stream}_MEMORY",
        events_prefix=f"{layout.events_prefix}-memory",
    )
    await js.add_stream(replace(events_stream_config(memory), storage=StorageType.MEMORY))
    try:
        return await raw(nc, memory, sessions, shape="batch", concurrency=concurrency)
    finally:
        await js.delete_stream(memory.events_stream)


def _check(data: bytes) -> int:
    ack = json.loads(data)
    if "error" in ack:
        raise RuntimeError(f"raw append refused: {ack['error']}")
    return int(ack["seq"])
