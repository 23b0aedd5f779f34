"""Command handling: load the session, decide, append; idempotent by command id.

A command that already appended (its id is on a stored event) answers with its
first result and appends nothing, however late it is retried, provided it asks the
same thing: the id (the caller's idempotency key) is bound to the fingerprint of the
request stored on its events, and the same id with other parameters is refused with
`IdempotencyKeyReused`. A concurrency conflict reloads and decides again, a bounded
number of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, Protocol

from opentelemetry import trace
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
from orchestrator.errors import CheckoutError, ConcurrencyConflict, IdempotencyKeyReused
from orchestrator.jetstream.event_store import DuplicateCommand, EventStore, SessionHistory
from orchestrator.privacy.sealing import subject_of
from orchestrator.services.closing import ProviderCloser
from orchestrator.telemetry import Telemetry, continuing, current_traceparent, link_to

__all__ = [
    "Accepted",
    "CommandContext",
    "CommandHandler",
    "CreateSessions",
    "ExpiryEnforcer",
    "OpenedAt",
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

    def _count(self, command: Command, outcome: str) -> None:
        self._telemetry.metrics.commands.add(1, {"type": command.type, "outcome": outcome})

    async def _handle(self, command: Command, context: CommandContext) -> Accepted:
        if self._create_flow is not None and isinstance(command, CreateCheckoutSession):
            return await self._create_flow.create(command, context)
        for _ in range(self._max_attempts):
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
        done = history.result_of(context.command_id)
        if done is not None:
            check_same_request(history, context)
            return Accepted(command.session_id, done, appended=0, duplicate=True)
        state = fold(e.event for e in history.events)
        events = decide(state, command)
        if not events:
            return Accepted(command.session_id, history.version, appended=0)
        if self._closer is not None and isinstance(
            command, ExpireCheckoutSession | CancelCheckoutSession
        ):
            await self._closer.close(state, command)
        metadata = [self._metadata(context, command.at) for _ in events]
        result = await self._store.append(
            command.session_id,
            events,
            metadata,
            expected_version=history.version,
            subject=subject_of(e.event for e in history.events),
        )
        return Accepted(command.session_id, result.last_sequence, appended=len(events))

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
