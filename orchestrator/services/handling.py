"""Command handling: load the session, decide, append; idempotent by command id.

A command that already appended (its id is on a stored event) answers with its
first result and appends nothing, however late it is retried, provided it asks the
same thing: the id (the caller's idempotency key) is bound to the fingerprint of the
request stored on its events, and the same id with other parameters is refused with
`IdempotencyKeyReused`. A concurrency conflict reloads and decides again, a bounded
number of times.

`handle_many` handles commands of distinct sessions that call no provider together:
their sessions are loaded in one pipelined round of direct gets, each is decided
alone, and their appends go out together, each with its own expectation. Every command
gets the outcome `handle` would give it; a conflicting one continues alone as in `handle`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from pydantic import SecretStr

from events.envelope import EventMetadata
from events.values import Provider
from orchestrator.domain.commands import (
    CancelCheckoutSession,
    Command,
    CreateCheckoutSession,
    ExpireCheckoutSession,
)
from orchestrator.domain.decider import decide, fold
from orchestrator.domain.state import State
from orchestrator.errors import CheckoutError, ConcurrencyConflict, IdempotencyKeyReused
from orchestrator.jetstream.event_store import (
    AppendRequest,
    AppendResult,
    DuplicateCommand,
    EventStore,
    SessionHistory,
)
from orchestrator.privacy.sealing import subject_of
from orchestrator.services.closing import ProviderCloser
from orchestrator.telemetry import (
    Telemetry,
    continuing,
    current_traceparent,
    link_to,
    traceparent_of,
)

__all__ = [
    "Accepted",
    "CommandContext",
    "CommandHandler",
    "CreateSessions",
    "ExpiryEnforcer",
    "OpenedAt",
    "Outcome",
    "check_same_request",
]


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Ids that travel with a command into the metadata of the events it causes."""

    command_id: str
    correlation_id: str
    traceparent: str | None = None
    fingerprint: str | None = None  # of the request; None for internal commands


@dataclass(frozen=True, slots=True)
class Accepted:
    session_id: str
    sequence: int
    appended: int
    duplicate: bool = False
    opened: OpenedAt | None = None


ExpiryEnforcer = Literal["provider", "orchestrator"]


@dataclass(frozen=True, slots=True)
class OpenedAt:
    """Where a created session can be paid (create commands with providers only)."""

    provider: Provider
    provider_session_id: str
    checkout_url: str | None
    expires_at: datetime | None
    client_secret: SecretStr | None = field(default=None, repr=False)
    # who closes the session at ``expires_at``: the provider, or our sweeper when the
    # provider ignores our expiry or keeps it open longer (lomi: its own 60 minutes)
    expiry_enforced_by: ExpiryEnforcer | None = None


def check_same_request(history: SessionHistory, context: CommandContext) -> None:
    """Refuse a command id already stored with another request's fingerprint."""
    stored = history.fingerprint_of(context.command_id)
    if stored is not None and context.fingerprint is not None and stored != context.fingerprint:
        raise IdempotencyKeyReused


Outcome = Accepted | Exception
"""What `CommandHandler.handle_many` gives back per command: what `handle` would return
or raise (a `CheckoutError`, or any other exception: a bug)."""


class CreateSessions(Protocol):
    async def create(self, command: CreateCheckoutSession, context: CommandContext) -> Accepted: ...


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        *,
        new_event_id: Callable[[], str],
        create_flow: CreateSessions | None = None,
        closer: ProviderCloser | None = None,
        telemetry: Telemetry | None = None,
        max_attempts: int = 5,
    ) -> None:
        self._store = store
        self._create_flow = create_flow
        self._closer = closer
        self._telemetry = telemetry or Telemetry.disabled()
        self._tracer = self._telemetry.tracer("orchestrator.services.handling")
        self._new_event_id = new_event_id
        self._max_attempts = max_attempts

    async def handle(self, command: Command, context: CommandContext) -> Accepted:
        attributes = {
            "checkout.command.type": command.type,
            "checkout.session.id": command.session_id,
        }
        with self._tracer.start_as_current_span(
            "checkout.command", context=continuing(context.traceparent), attributes=attributes
        ):
            context = replace(context, traceparent=current_traceparent() or context.traceparent)
            try:
                accepted = await self._handle(command, context)
            except CheckoutError as exc:
                self._count(command, f"rejected:{exc.code}")
                raise
            self._count(command, "duplicate" if accepted.duplicate else "accepted")
            return accepted

    def batchable(self, command: Command) -> bool:
        """Whether `handle_many` takes ``command``: one that calls no provider (a create
        with providers routes and opens a session; an expiry or cancel closes one)."""
        if self._create_flow is not None and isinstance(command, CreateCheckoutSession):
            return False
        return self._closer is None or not isinstance(
            command, ExpireCheckoutSession | CancelCheckoutSession
        )

    async def handle_many(
        self, commands: Sequence[tuple[Command, CommandContext]]
    ) -> list[Outcome]:
        """Handle `batchable` commands of distinct sessions together; one outcome each, in
        order (see the module docstring)."""
        if len({command.session_id for command, _ in commands}) != len(commands):
            raise ValueError("handle_many takes one command per session")
        spans = [self._command_span(command, context) for command, context in commands]
        contexts = [
            replace(context, traceparent=traceparent_of(span) or context.traceparent)
            for span, (_, context) in zip(spans, commands, strict=True)
        ]
        try:
            histories = await self._store.load_many([c.session_id for c, _ in commands])
        except CheckoutError as exc:  # the store is out of reach: every command waits
            return self._finish(commands, spans, [exc] * len(commands))
        outcomes: list[Outcome | None] = [None] * len(commands)
        appends: dict[int, AppendRequest] = {}
        for index, ((command, _), context) in enumerate(zip(commands, contexts, strict=True)):
            history = histories[command.session_id]
            if history.events:
                link_to(spans[index], history.events[0].metadata.traceparent)
            try:
                _, decision = self._decision(command, context, history)
            except Exception as exc:  # noqa: BLE001 - the outcome `handle` would raise
                outcomes[index] = exc
                continue
            if isinstance(decision, Accepted):
                outcomes[index] = decision
            else:
                appends[index] = decision
        retries = await self._append_all(appends, spans, outcomes)
        if retries:  # each conflicting command goes on alone, as `handle` would retry it
            retried = await asyncio.gather(
                *(self._retry(commands[i][0], contexts[i], spans[i]) for i in retries),
                return_exceptions=True,
            )
            for index, outcome in zip(retries, retried, strict=True):
                outcomes[index] = outcome if isinstance(outcome, Accepted | Exception) else None
        return self._finish(commands, spans, outcomes)

    async def _append_all(
        self,
        appends: dict[int, AppendRequest],
        spans: Sequence[Span],
        outcomes: list[Outcome | None],
    ) -> list[int]:
        """Send every append at once; fill in the outcomes; the indexes that conflicted."""
        results = await self._store.append_many(
            list(appends.values()),
            parents=[trace.set_span_in_context(spans[index]) for index in appends],
        )
        conflicted: list[int] = []
        for (index, request), result in zip(appends.items(), results, strict=True):
            if isinstance(result, AppendResult):
                outcomes[index] = Accepted(
                    request.session_id, result.last_sequence, appended=len(request.events)
                )
            elif isinstance(result, ConcurrencyConflict | DuplicateCommand):
                conflicted.append(index)
            else:
                outcomes[index] = result
        return conflicted

    def _command_span(self, command: Command, context: CommandContext) -> Span:
        return self._tracer.start_span(
            "checkout.command",
            context=continuing(context.traceparent),
            attributes={
                "checkout.command.type": command.type,
                "checkout.session.id": command.session_id,
            },
        )

    async def _retry(self, command: Command, context: CommandContext, span: Span) -> Accepted:
        self._telemetry.metrics.append_conflicts.add(1, {"type": command.type})
        with trace.use_span(span, end_on_exit=False):
            return await self._handle(command, context, attempts=self._max_attempts - 1)

    def _finish(
        self,
        commands: Sequence[tuple[Command, CommandContext]],
        spans: Sequence[Span],
        outcomes: Sequence[Outcome | None],
    ) -> list[Outcome]:
        finished: list[Outcome] = []
        for (command, _), span, outcome in zip(commands, spans, outcomes, strict=True):
            result = outcome if outcome is not None else RuntimeError("no outcome")
            if isinstance(result, Accepted):
                self._count(command, "duplicate" if result.duplicate else "accepted")
            else:
                if isinstance(result, CheckoutError):
                    self._count(command, f"rejected:{result.code}")
                span.record_exception(result)
                span.set_status(Status(StatusCode.ERROR, str(result)))
            span.end()
            finished.append(result)
        return finished

    def _count(self, command: Command, outcome: str) -> None:
        self._telemetry.metrics.commands.add(1, {"type": command.type, "outcome": outcome})

    async def _handle(
        self, command: Command, context: CommandContext, *, attempts: int | None = None
    ) -> Accepted:
        if self._create_flow is not None and isinstance(command, CreateCheckoutSession):
            return await self._create_flow.create(command, context)
        for _ in range(self._max_attempts if attempts is None else attempts):
            try:
                return await self._attempt(command, context)
            except (ConcurrencyConflict, DuplicateCommand):
                self._telemetry.metrics.append_conflicts.add(1, {"type": command.type})
                continue
        raise ConcurrencyConflict(
            command.session_id, -1, f"still conflicting after {self._max_attempts} attempts"
        )

    async def _attempt(self, command: Command, context: CommandContext) -> Accepted:
        history = await self._store.load(command.session_id)
        if history.events:  # a later command (a webhook, an expiry) points back at the checkout
            link_to(trace.get_current_span(), history.events[0].metadata.traceparent)
        state, decision = self._decision(command, context, history)
        if isinstance(decision, Accepted):
            return decision
        if (
            self._closer is not None
            and state is not None
            and isinstance(command, ExpireCheckoutSession | CancelCheckoutSession)
        ):
            await self._closer.close(state, command)
        result = await self._store.append(
            command.session_id,
            decision.events,
            decision.metadata,
            expected_version=decision.expected_version,
            subject=decision.subject,
        )
        return Accepted(command.session_id, result.last_sequence, appended=len(decision.events))

    def _decision(
        self, command: Command, context: CommandContext, history: SessionHistory
    ) -> tuple[State | None, Accepted | AppendRequest]:
        """What ``command`` does to ``history``: an answer without appending (it was
        handled before, or changes nothing), or the append to make. Raises what the
        decider raises (an illegal transition) and `IdempotencyKeyReused`."""
        done = history.result_of(context.command_id)
        if done is not None:
            check_same_request(history, context)
            return None, Accepted(command.session_id, done, appended=0, duplicate=True)
        state = fold(e.event for e in history.events)
        events = decide(state, command)
        if not events:
            return state, Accepted(command.session_id, history.version, appended=0)
        metadata = [self._metadata(context, command.at) for _ in events]
        subject = subject_of(e.event for e in history.events)
        return state, AppendRequest(command.session_id, events, metadata, history.version, subject)

    def _metadata(self, context: CommandContext, at: datetime) -> EventMetadata:
        return EventMetadata(
            event_id=self._new_event_id(),
            command_id=context.command_id,
            correlation_id=context.correlation_id,
            causation_id=context.command_id,
            occurred_at=at,
            traceparent=context.traceparent,
            command_fingerprint=context.fingerprint,
        )
