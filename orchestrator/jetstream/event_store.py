"""The event store: one session's events on JetStream, appended with optimistic concurrency.

Guarantees:
- ``append`` writes all events of one command or none (an atomic batch when there is
  more than one), and only if the session's last stored sequence is the one the
  caller read (``Nats-Expected-Last-Subject-Sequence`` on the session's wildcard
  subject). A conflict raises `ConcurrencyConflict`; nothing is stored.
- Every message carries ``Nats-Msg-Id = <command id>:<index>``: within the duplicate
  window the server refuses a second copy, which surfaces as `DuplicateCommand`.
  Beyond the window the caller finds the command id in the loaded history.
- ``load`` returns every event of a session in stream order, read by batched direct
  get on the session's subject (no consumer is created).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from events.catalog import CheckoutEvent
from events.codec import EncodedEvent, decode, encode
from events.envelope import EventMetadata, RecordedEvent
from events.subjects import session_filter
from orchestrator.errors import CheckoutError, ConcurrencyConflict, StoreUnavailable
from orchestrator.jetstream.streams import StreamLayout

__all__ = ["AppendResult", "DuplicateCommand", "EventStore", "PersonalDataSealer", "SessionHistory"]

_WRONG_LAST_SEQUENCE = 10071
_BATCH_DUPLICATE_MSG_ID = 10201
_DIRECT_BATCH = 256
_NO_RESPONDERS = "503"


_REAP_EVERY = 0.25  # seconds between checks for appends past their timeout


class DuplicateCommand(CheckoutError):
    """The server already holds messages of this command (duplicate window)."""

    code = "duplicate_command"


class PersonalDataSealer(Protocol):
    """Seals the customers of events before they are encoded (`orchestrator.privacy`)."""

    async def seal(
        self, session_id: str, events: Sequence[CheckoutEvent], subject: str | None
    ) -> list[CheckoutEvent]: ...


@dataclass(frozen=True, slots=True)
class SessionHistory:
    session_id: str
    events: tuple[RecordedEvent, ...]

    @property
    def version(self) -> int:
        """Stream sequence of the session's last event; 0 for a new session."""
        return self.events[-1].sequence if self.events else 0

    def result_of(self, command_id: str) -> int | None:
        """Sequence of the last event a command appended, if it appended any."""
        found = [e.sequence for e in self.events if e.metadata.command_id == command_id]
        return found[-1] if found else None

    def fingerprint_of(self, command_id: str) -> str | None:
        """The request fingerprint stored with a command's events (None before
        fingerprints were stored, or if the command appended nothing here)."""
        for recorded in self.events:
            if recorded.metadata.command_id == command_id:
                return recorded.metadata.command_fingerprint
        return None


@dataclass(frozen=True, slots=True)
class AppendResult:
    first_sequence: int
    last_sequence: int


class EventStore:
    def __init__(
        self,
        nc: NatsClient,
        layout: StreamLayout,
        *,
        timeout: float = 5.0,
        tracer_provider: TracerProvider | None = None,
        sealer: PersonalDataSealer | None = None,
    ) -> None:
        """``sealer``: seals personal data on append (the composition root always passes
        one; without it, events are stored as given)."""
        self._sealer = sealer
        self._tracer = (tracer_provider or trace.NoOpTracerProvider()).get_tracer(__name__)
        self._nc = nc
        self._layout = layout
        self._timeout = timeout
        self._inbox_prefix = nc.new_inbox()
        self._pending: dict[str, asyncio.Queue[Msg]] = {}  # direct gets in flight
        # appends in flight: inbox -> (future, deadline); one reaper task times them out
        # (a timer per append cost more than the rest of the append's own work)
        self._acks: dict[str, tuple[asyncio.Future[Msg], float]] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._tokens = itertools.count()
        self._reply_sub: Subscription | None = None

    @property
    def layout(self) -> StreamLayout:
        return self._layout

    async def load(self, session_id: str) -> SessionHistory:
        subject = session_filter(self._layout.events_prefix, session_id, self._layout.partitions)
        events: list[RecordedEvent] = []
        next_seq = 1
        while True:
            batch, more = await self._direct_batch(subject, next_seq)
            events.extend(batch)
            if not more:
                return SessionHistory(session_id, tuple(events))
            next_seq = batch[-1].sequence + 1

    async def append(
        self,
        session_id: str,
        events: Sequence[CheckoutEvent],
        metadata: Sequence[EventMetadata],
        *,
        expected_version: int,
        subject: str | None = None,
    ) -> AppendResult:
        """``subject``: the session's data subject, if it has one already (its personal
        data is sealed for it)."""
        if not events or len(events) != len(metadata):
            raise ValueError("append needs one metadata per event, and at least one event")
        if self._sealer is not None:
            events = await self._sealer.seal(session_id, events, subject)
        layout = self._layout
        encoded = [
            encode(e, m, prefix=layout.events_prefix, partitions=layout.partitions, index=i)
            for i, (e, m) in enumerate(zip(events, metadata, strict=True))
        ]
        expectation = {
            "Nats-Expected-Last-Subject-Sequence": str(expected_version),
            "Nats-Expected-Last-Subject-Sequence-Subject": session_filter(
                layout.events_prefix, session_id, layout.partitions
            ),
        }
        encoded[0].headers.update(expectation)
        attributes: dict[str, str | int] = {
            "checkout.session.id": session_id,
            "checkout.events": len(encoded),
            "checkout.expected_version": expected_version,
        }
        with self._tracer.start_as_current_span("checkout.events.append", attributes=attributes):
            ack = await (
                self._publish_one(encoded[0]) if len(encoded) == 1 else self._batch(encoded)
            )
        error = ack.get("error")
        if error:
            self._raise_for(error, session_id, expected_version)
        if ack.get("duplicate"):
            raise DuplicateCommand(session_id)
        last = int(ack["seq"])
        return AppendResult(first_sequence=last - len(encoded) + 1, last_sequence=last)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._reply_sub is not None:
            await self._reply_sub.unsubscribe()
            self._reply_sub = None

    # -- writing ---------------------------------------------------------------

    async def _request(self, message: EncodedEvent) -> dict[str, Any]:
        """Publish and wait for the JetStream ack on this store's own reply subscription
        (a future per append, timed out by one reaper task: cheaper than ``nc.request``)."""
        await self._replies()
        inbox = f"{self._inbox_prefix}.{next(self._tokens)}"
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[Msg] = loop.create_future()
        self._acks[inbox] = (ack, loop.time() + self._timeout)
        try:
            await self._nc.publish(
                message.subject, message.payload, reply=inbox, headers=message.headers
            )
            reply = await ack
        except TimeoutError as exc:
            raise StoreUnavailable(f"JetStream did not acknowledge an append: {exc!r}") from exc
        finally:
            self._acks.pop(inbox, None)
        if reply.headers and reply.headers.get("Status") == _NO_RESPONDERS:
            raise StoreUnavailable("JetStream did not acknowledge an append: no responders")
        return json.loads(reply.data) if reply.data else {}

    async def _publish_one(self, message: EncodedEvent) -> dict[str, Any]:
        return await self._request(message)

    async def _batch(self, messages: list[EncodedEvent]) -> dict[str, Any]:
        """ADR-50 atomic batch: all messages are stored at commit, or none."""
        batch_id = f"{messages[0].headers['Nats-Msg-Id']}"[:64]
        last = len(messages)
        for position, message in enumerate(messages, start=1):
            message.headers["Nats-Batch-Id"] = batch_id
            message.headers["Nats-Batch-Sequence"] = str(position)
            if position == last:
                message.headers["Nats-Batch-Commit"] = "1"
                return await self._request(message)
            await self._nc.publish(message.subject, message.payload, headers=message.headers)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_for(error: dict[str, Any], session_id: str, expected: int) -> None:
        code = error.get("err_code")
        description = str(error.get("description", "append rejected"))
        if code == _WRONG_LAST_SEQUENCE:
            raise ConcurrencyConflict(session_id, expected, description)
        if code == _BATCH_DUPLICATE_MSG_ID:
            raise DuplicateCommand(session_id)
        raise StoreUnavailable(f"JetStream refused the append: {description}", err_code=code)

    # -- reading ---------------------------------------------------------------

    async def _replies(self) -> None:
        if self._reply_sub is None:
            self._reply_sub = await self._nc.subscribe(f"{self._inbox_prefix}.*", cb=self._route)
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="event-store-ack-reaper")

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_REAP_EVERY)
            now = loop.time()
            for ack, deadline in list(self._acks.values()):
                if deadline <= now and not ack.done():
                    ack.set_exception(TimeoutError("no acknowledgement in time"))

    async def _route(self, msg: Msg) -> None:
        queue = self._pending.get(msg.subject)
        if queue is not None:
            queue.put_nowait(msg)
            return
        pending = self._acks.get(msg.subject)
        if pending is not None and not pending[0].done():
            pending[0].set_result(msg)

    async def _direct_batch(self, subject: str, start: int) -> tuple[list[RecordedEvent], bool]:
        """One batched direct get; returns the events and whether more remain."""
        await self._replies()
        inbox = f"{self._inbox_prefix}.{next(self._tokens)}"
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._pending[inbox] = queue
        request = {"seq": start, "next_by_subj": subject, "batch": _DIRECT_BATCH}
        try:
            await self._nc.publish(
                f"$JS.API.DIRECT.GET.{self._layout.events_stream}",
                json.dumps(request).encode(),
                reply=inbox,
            )
            async with asyncio.timeout(self._timeout):  # no task per load, as wait_for makes
                return await self._collect(queue)
        except TimeoutError as exc:
            raise StoreUnavailable(f"direct get on {subject} timed out") from exc
        finally:
            del self._pending[inbox]

    async def _collect(self, queue: asyncio.Queue[Msg]) -> tuple[list[RecordedEvent], bool]:
        events: list[RecordedEvent] = []
        pending = 0
        while True:
            msg = await queue.get()
            headers = msg.headers or {}
            status = headers.get("Status")
            if status == "404":
                return events, False
            if status is not None:
                if status != "204":
                    raise StoreUnavailable(f"direct get failed with status {status}")
                return events, pending > 0 and len(events) > 0
            sequence = int(headers["Nats-Sequence"])
            pending = int(headers.get("Nats-Num-Pending", "0"))
            events.append(decode(headers["Nats-Subject"], msg.data, headers, sequence))
