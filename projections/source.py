"""Reading the event stream, one partition at a time, in stream order, without gaps.

`EventSource` names the stream, its subject prefix and the partition count (the
composition root passes the deployment's; tests pass unique ones). `PartitionReader` is
an ordered pull consumer on ``<prefix>.<p>.>`` starting at a given stream sequence:

- an ephemeral, memory-stored, ack-less JetStream consumer, pulled in requests of
  ``batch`` messages with a server-side expiry and idle heartbeats, so a caught-up
  reader gets each new event as soon as it is stored;
- each delivery's consumer sequence is checked: on a gap, a lost pull, a heartbeat that
  stops or a consumer that disappeared (server restart), the consumer is recreated from
  the last delivered stream sequence + 1. Nothing is skipped, nothing reordered;
- messages are decoded on arrival; an undecodable one (`events.DecodeError`) is
  delivered too, with its error, so the projector can park it;
- at most ``buffer`` messages wait in memory: no pull is sent while the buffer is full.

`partition_heads` and `pending_counts` answer "how far does the stream go" for status,
lag and catch-up checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from events.codec import DecodeError, Headers
from events.subjects import partition_filter
from projections.decoding import StoredEvent, decode_stored

__all__ = [
    "EventSource",
    "PartitionReader",
    "ReaderSettings",
    "StreamMessage",
    "partition_heads",
    "pending_counts",
    "read_all",
    "read_range",
]

log = logging.getLogger(__name__)

_STATUS = "Status"
_HEARTBEAT = "100"
_NO_MESSAGES = "404"
_REQUEST_TIMEOUT = "408"
_V1_ACK_TOKENS = 9


@dataclass(frozen=True, slots=True)
class EventSource:
    """Where the events are: stream name, subject prefix, number of partitions."""

    stream: str = "CHECKOUT"
    prefix: str = "checkout.events"
    partitions: int = 16

    def partition_subject(self, partition: int) -> str:
        return partition_filter(self.prefix, partition)


@dataclass(frozen=True, slots=True)
class ReaderSettings:
    batch: int = 500
    buffer: int = 2000
    expires: float = 5.0
    heartbeat: float = 1.0
    consumer_inactive: float = 60.0


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One stored message: decoded into ``event``, or ``error`` says why it could not be."""

    partition: int
    sequence: int
    subject: str
    payload: bytes
    headers: Mapping[str, str]
    event: StoredEvent | None
    error: str | None = None

    @property
    def event_type(self) -> str | None:
        return self.headers.get(Headers.EVENT_TYPE)


def _ack_fields(reply: str) -> tuple[int, int, int]:
    """(stream sequence, consumer sequence, pending) from a JetStream ``$JS.ACK`` subject."""
    tokens = reply.split(".")
    offset = 0 if len(tokens) == _V1_ACK_TOKENS else 2
    return int(tokens[5 + offset]), int(tokens[6 + offset]), int(tokens[8 + offset])


def _message(partition: int, msg: Msg, sequence: int) -> StreamMessage:
    headers = dict(msg.headers or {})
    try:
        event: StoredEvent | None = decode_stored(msg.subject, msg.data, headers, sequence)
        error = None
    except DecodeError as exc:
        event, error = None, str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever stops decoding makes it poison
        event, error = None, f"{type(exc).__name__}: {exc}"
    return StreamMessage(partition, sequence, msg.subject, msg.data, headers, event, error)


class _Restart(Exception):
    """The consumer must be recreated from the next undelivered sequence."""


@dataclass
class _Pull:
    """State of the one outstanding pull request."""

    remaining: int
    done: asyncio.Event = field(default_factory=asyncio.Event)
    last_activity: float = field(default_factory=time.monotonic)
    failure: str | None = None


class PartitionReader:
    """Ordered, gap-free delivery of one partition from ``start`` on (see module doc)."""

    def __init__(
        self,
        nc: NatsClient,
        source: EventSource,
        partition: int,
        start: int,
        *,
        wake: asyncio.Event,
        settings: ReaderSettings = ReaderSettings(),
    ) -> None:
        self._nc = nc
        self._source = source
        self.partition = partition
        self._next = max(1, start)
        self._wake = wake
        self._settings = settings
        self._buffer: deque[StreamMessage] = deque()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._consumer: str | None = None
        self._expected_cseq = 1
        self._pull: _Pull | None = None
        self._incarnation = 0
        self.caught_up = False

    # -- public ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"reader-{self.partition}")

    def take(self, limit: int) -> list[StreamMessage]:
        """Up to ``limit`` buffered messages, in stream order (never waits)."""
        count = min(limit, len(self._buffer))
        taken = [self._buffer.popleft() for _ in range(count)]
        if len(self._buffer) < self._settings.buffer:
            self._room.set()
        return taken

    def __len__(self) -> int:
        return len(self._buffer)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._drop_consumer()

    # -- the pull loop --------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await self._create_consumer()
                while True:
                    await self._room.wait()
                    await self._pull_once()
            except (_Restart, nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                log.info("partition %s reader restarts at %s: %r", self.partition, self._next, exc)
                await self._drop_consumer()
                await asyncio.sleep(0.05)

    async def _create_consumer(self) -> None:
        config = ConsumerConfig(
            filter_subject=self._source.partition_subject(self.partition),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._next,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=self._settings.consumer_inactive,
        )
        info = await self._nc.jetstream().add_consumer(self._source.stream, config)
        self._consumer = info.name
        self._expected_cseq = 1
        self._incarnation += 1
        incarnation = self._incarnation

        async def on_message(msg: Msg) -> None:
            if incarnation == self._incarnation:
                self._on_message(msg)

        self._sub = await self._nc.subscribe(self._nc.new_inbox(), cb=on_message)

    async def _drop_consumer(self) -> None:
        sub, consumer = self._sub, self._consumer
        self._sub = self._consumer = None
        self._incarnation += 1
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if consumer is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.jetstream().delete_consumer(self._source.stream, consumer)

    async def _pull_once(self) -> None:
        if self._sub is None or self._consumer is None:
            raise _Restart("no consumer")
        settings = self._settings
        room = settings.buffer - len(self._buffer)
        pull = self._pull = _Pull(remaining=max(1, min(settings.batch, room)))
        request = {
            "batch": pull.remaining,
            "expires": int(settings.expires * 1e9),
            "idle_heartbeat": int(settings.heartbeat * 1e9),
        }
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._source.stream}.{self._consumer}",
            json.dumps(request).encode(),
            reply=self._sub.subject,
        )
        await self._wait(pull)

    async def _wait(self, pull: _Pull) -> None:
        silence = self._settings.heartbeat * 3
        while not pull.done.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(silence):  # not wait_for: on 3.11 it can swallow
                    await pull.done.wait()  # a cancel, and close() would wait forever
            if not pull.done.is_set() and time.monotonic() - pull.last_activity > silence:
                raise _Restart("no message and no heartbeat")
        if pull.failure is not None:
            raise _Restart(pull.failure)

    def _on_message(self, msg: Msg) -> None:
        pull = self._pull
        if pull is None:
            return
        pull.last_activity = time.monotonic()
        status = (msg.headers or {}).get(_STATUS)
        if status is not None:
            self._on_status(pull, status, msg)
            return
        self._on_event(pull, msg)

    def _on_status(self, pull: _Pull, status: str, msg: Msg) -> None:
        if status == _HEARTBEAT:
            return
        if status not in {_NO_MESSAGES, _REQUEST_TIMEOUT}:
            description = (msg.headers or {}).get("Description", "")
            pull.failure = f"status {status} {description}".strip()
        pull.done.set()

    def _on_event(self, pull: _Pull, msg: Msg) -> None:
        if not msg.reply:
            pull.failure = "a delivery without its JetStream metadata"
            pull.done.set()
            return
        sequence, cseq, pending = _ack_fields(msg.reply)
        if cseq != self._expected_cseq:
            pull.failure = f"consumer sequence {cseq}, expected {self._expected_cseq}"
            pull.done.set()
            return
        self._expected_cseq = cseq + 1
        self._next = sequence + 1
        self.caught_up = pending == 0
        self._buffer.append(_message(self.partition, msg, sequence))
        self._wake.set()
        if len(self._buffer) >= self._settings.buffer:
            self._room.clear()
        pull.remaining -= 1
        if pull.remaining <= 0:
            pull.done.set()


async def partition_heads(nc: NatsClient, source: EventSource) -> dict[int, int]:
    """Last stream sequence stored in each partition (0 when it holds nothing)."""
    js = nc.jetstream()
    heads: dict[int, int] = {}
    for partition in range(source.partitions):
        try:
            msg = await js.get_last_msg(source.stream, source.partition_subject(partition))
            heads[partition] = int(msg.seq or 0)
        except nats.js.errors.NotFoundError:
            heads[partition] = 0
    return heads


async def pending_counts(
    nc: NatsClient, source: EventSource, positions: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], int]:
    """For each (partition, checkpoint): how many events the partition holds after it."""
    js = nc.jetstream()
    counts: dict[tuple[int, int], int] = {}
    for partition, position in set(positions):
        config = ConsumerConfig(
            filter_subject=source.partition_subject(partition),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=position + 1,
            ack_policy=AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=5.0,
        )
        info = await js.add_consumer(source.stream, config)
        counts[(partition, position)] = int(info.num_pending or 0)
        with contextlib.suppress(Exception):
            await js.delete_consumer(source.stream, info.name)
    return counts


async def read_range(
    nc: NatsClient,
    source: EventSource,
    partition: int,
    start: int,
    stop: int,
    *,
    timeout: float = 30.0,
) -> list[StreamMessage]:
    """The messages of ``partition`` with ``start <= sequence <= stop``, in order."""
    if stop < start:
        return []
    wake = asyncio.Event()
    reader = PartitionReader(nc, source, partition, start, wake=wake)
    found: list[StreamMessage] = []
    reader.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                wake.clear()
                found += reader.take(10_000)
                if found and found[-1].sequence >= stop:
                    break
                if reader.caught_up and not len(reader):
                    break
                await wake.wait()
    finally:
        await reader.close()
    return [m for m in found if m.sequence <= stop]


async def read_all(nc: NatsClient, source: EventSource) -> list[StreamMessage]:
    """Every message of the stream, partition by partition (for checks and tools)."""
    heads = await partition_heads(nc, source)
    found: list[StreamMessage] = []
    for partition, head in heads.items():
        found += await read_range(nc, source, partition, 1, head)
    return found
