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
- ``load_many`` and ``append_many`` do the same for several sessions at once: every
  request is sent before the first answer is awaited (one round trip for all, not one
  each), and each session keeps its own guarantees (its own expectation, its own
  outcome: one conflict fails that session's append only).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import TracerProvider

from events.catalog import CheckoutEvent
from events.codec import EncodedEvent, decode, encode
from events.envelope import EventMetadata, RecordedEvent
from events.subjects import session_filter
from orchestrator.errors import CheckoutError, ConcurrencyConflict, StoreUnavailable
from orchestrator.jetstream.streams import StreamLayout

__all__ = [
    "AppendRequest",
    "AppendResult",
    "DuplicateCommand",
    "EventStore",
    "PersonalDataSealer",
    "SessionHistory",
]

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


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One session's append within `EventStore.append_many`."""

    session_id: str
    events: Sequence[CheckoutEvent]
    metadata: Sequence[EventMetadata]
    expected_version: int
    subject: str | None = None
    """the session's data subject, if it has one already (`orchestrator.privacy`)"""


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
        return await self._load_from(session_id, 1, [])

    async def load_many(self, session_ids: Sequence[str]) -> dict[str, SessionHistory]:
        """Every session's history, the first direct get of each sent before any answer is
        read (a session longer than one direct batch continues on its own)."""
        await self._replies()
        requests: list[tuple[str, str]] = []
        histories: dict[str, SessionHistory] = {}
        try:
            for sid in dict.fromkeys(session_ids):
                # one by one: if a publish fails, those sent before it are still cleaned up
                requests.append((sid, await self._direct_request(self._filter(sid), 1)))  # noqa: PERF401
            for sid, inbox in requests:
                events, more = await self._answer(inbox, sid)
                histories[sid] = (
                    await self._load_from(sid, events[-1].sequence + 1, events)
                    if more
                    else SessionHistory(sid, tuple(events))
                )
        finally:
            for _, inbox in requests:
                self._pending.pop(inbox, None)
        return histories

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
        request = await self._sealed(
            AppendRequest(session_id, events, metadata, expected_version, subject)
        )
        encoded = self._encoded(request)
        with self._tracer.start_as_current_span(
            "checkout.events.append", attributes=_span_attributes(request)
        ):
            await self._replies()
            ack = await self._sent(encoded)
            return self._result(request, await self._acknowledged(ack), len(encoded))

    async def append_many(
        self, requests: Sequence[AppendRequest], *, parents: Sequence[Context] | None = None
    ) -> list[AppendResult | CheckoutError]:
        """Each request appended as `append` would (its own expectation and outcome), all
        sent before the first acknowledgement is awaited. One outcome per request, in
        order: its result, or the error `append` would raise (`ConcurrencyConflict`,
        `DuplicateCommand`, `StoreUnavailable`). At most one request per session;
        ``parents``: the trace context of each request's span."""
        if len({r.session_id for r in requests}) != len(requests):
            raise ValueError("append_many takes one request per session")
        # personal data sealed first; a request whose key store call fails gets that error
        sealed = await asyncio.gather(*(self._sealed(r) for r in requests), return_exceptions=True)
        for outcome in sealed:
            if isinstance(outcome, BaseException) and not isinstance(outcome, CheckoutError):
                raise outcome
        ready = [r for r in sealed if isinstance(r, AppendRequest)]
        encoded = [self._encoded(r) for r in ready]
        await self._replies()
        spans = [
            self._tracer.start_span(
                "checkout.events.append",
                context=parents[index] if parents else None,
                attributes=_span_attributes(request),
            )
            for index, request in enumerate(requests)
        ]
        acks: list[asyncio.Future[Msg]] = []
        try:
            for messages in encoded:
                acks.append(await self._sent(messages))  # noqa: PERF401 - as in load_many
            sent = iter(zip(ready, encoded, acks, strict=True))
            outcomes: list[AppendResult | CheckoutError] = []
            for outcome in sealed:
                if isinstance(outcome, CheckoutError):
                    outcomes.append(outcome)
                    continue
                request, messages, ack = next(sent)
                try:
                    reply = await self._acknowledged(ack)
                    outcomes.append(self._result(request, reply, len(messages)))
                except CheckoutError as exc:
                    outcomes.append(exc)
            return outcomes
        finally:
            for ack in acks:
                ack.cancel()  # only those left unawaited (cancelled on the way): no-op otherwise
            for span in spans:
                span.end()

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        if self._reply_sub is not None:
            await self._reply_sub.unsubscribe()
            self._reply_sub = None

    # -- writing ---------------------------------------------------------------

    async def _sealed(self, request: AppendRequest) -> AppendRequest:
        """The request with its customers' personal data sealed (the store's sealer)."""
        if self._sealer is None:
            return request
        events = await self._sealer.seal(request.session_id, request.events, request.subject)
        return dataclasses.replace(request, events=events)

    def _filter(self, session_id: str) -> str:
        layout = self._layout
        return session_filter(layout.events_prefix, session_id, layout.partitions)

    def _encoded(self, request: AppendRequest) -> list[EncodedEvent]:
        events, metadata = request.events, request.metadata
        if not events or len(events) != len(metadata):
            raise ValueError("append needs one metadata per event, and at least one event")
        layout = self._layout
        encoded = [
            encode(e, m, prefix=layout.events_prefix, partitions=layout.partitions, index=i)
            for i, (e, m) in enumerate(zip(events, metadata, strict=True))
        ]
        encoded[0].headers.update(
            {
                "Nats-Expected-Last-Subject-Sequence": str(request.expected_version),
                "Nats-Expected-Last-Subject-Sequence-Subject": self._filter(request.session_id),
            }
        )
        if len(encoded) > 1:  # ADR-50 atomic batch: all messages are stored at commit, or none
            batch_id = f"{encoded[0].headers['Nats-Msg-Id']}"[:64]
            for position, message in enumerate(encoded, start=1):
                message.headers["Nats-Batch-Id"] = batch_id
                message.headers["Nats-Batch-Sequence"] = str(position)
            encoded[-1].headers["Nats-Batch-Commit"] = "1"
        return encoded

    async def _sent(self, messages: list[EncodedEvent]) -> asyncio.Future[Msg]:
        """Publish one append (a batch: its last message carries the commit and the reply
        inbox); the future of its JetStream acknowledgement, timed out by the reaper."""
        *staged, last = messages
        for message in staged:
            await self._nc.publish(message.subject, message.payload, headers=message.headers)
        inbox = f"{self._inbox_prefix}.{next(self._tokens)}"
        loop = asyncio.get_running_loop()
        ack: asyncio.Future[Msg] = loop.create_future()
        self._acks[inbox] = (ack, loop.time() + self._timeout)
        ack.add_done_callback(lambda _: self._acks.pop(inbox, None))
        try:
            await self._nc.publish(last.subject, last.payload, reply=inbox, headers=last.headers)
        except BaseException:
            ack.cancel()
            raise
        return ack

    @staticmethod
    async def _acknowledged(ack: asyncio.Future[Msg]) -> dict[str, Any]:
        try:
            reply = await ack
        except TimeoutError as exc:
            raise StoreUnavailable(f"JetStream did not acknowledge an append: {exc!r}") from exc
        if reply.headers and reply.headers.get("Status") == _NO_RESPONDERS:
            raise StoreUnavailable("JetStream did not acknowledge an append: no responders")
        return json.loads(reply.data) if reply.data else {}

    def _result(self, request: AppendRequest, ack: dict[str, Any], count: int) -> AppendResult:
        error = ack.get("error")
        if error:
            self._raise_for(error, request.session_id, request.expected_version)
        if ack.get("duplicate"):
            raise DuplicateCommand(request.session_id)
        last = int(ack["seq"])
        return AppendResult(first_sequence=last - count + 1, last_sequence=last)

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

    async def _direct_request(self, subject: str, start: int) -> str:
        """Send a batched direct get of ``subject`` from ``start``; its inbox (registered:
        the caller removes it from ``_pending``)."""
        inbox = f"{self._inbox_prefix}.{next(self._tokens)}"
        self._pending[inbox] = asyncio.Queue()
        request = {"seq": start, "next_by_subj": subject, "batch": _DIRECT_BATCH}
        await self._nc.publish(
            f"$JS.API.DIRECT.GET.{self._layout.events_stream}",
            json.dumps(request).encode(),
            reply=inbox,
        )
        return inbox

    async def _answer(self, inbox: str, session_id: str) -> tuple[list[RecordedEvent], bool]:
        try:
            async with asyncio.timeout(self._timeout):  # no task per load, as wait_for makes
                return await self._collect(self._pending[inbox])
        except TimeoutError as exc:
            raise StoreUnavailable(f"direct get of session {session_id} timed out") from exc

    async def _load_from(
        self, session_id: str, start: int, events: list[RecordedEvent]
    ) -> SessionHistory:
        subject = self._filter(session_id)
        await self._replies()
        while True:
            inbox = ""
            try:
                inbox = await self._direct_request(subject, start)
                batch, more = await self._answer(inbox, session_id)
            finally:
                self._pending.pop(inbox, None)
            events.extend(batch)
            if not more:
                return SessionHistory(session_id, tuple(events))
            start = batch[-1].sequence + 1

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


def _span_attributes(request: AppendRequest) -> dict[str, str | int]:
    return {
        "checkout.session.id": request.session_id,
        "checkout.events": len(request.events),
        "checkout.expected_version": request.expected_version,
    }
