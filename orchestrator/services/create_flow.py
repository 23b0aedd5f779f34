"""Creating a checkout session: route, open at a provider (falling back), append once.

The whole creation is decided in memory through the pure decider, then appended as
one atomic batch: ``requested, routed, [provider_call_failed ...], provider_session_opened``
(or ending in a failure with no fallback left). Nothing reaches the stream unless the
whole story does.

Provider calls carry the idempotency key (session id, attempt): a redelivered create
command reopens the *same* provider session instead of a second one. A retried command
whose events are already stored is answered from them (and, for embedded checkouts,
the client secret is fetched again from the provider: it is never stored), if it asks
the same thing: the command id is bound to the request's fingerprint, stored on the
events, and a reuse with other parameters is `IdempotencyKeyReused`, as is a command id
the server already holds for another session (its duplicate window).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from events.catalog import CheckoutEvent, ProviderSessionOpened
from events.envelope import EventMetadata
from events.values import Provider
from orchestrator.domain.commands import (
    Command,
    CreateCheckoutSession,
    RecordProviderCallFailed,
    RecordProviderSessionOpened,
    RecordRouting,
)
from orchestrator.domain.decider import decide, evolve, fold
from orchestrator.domain.state import Failed, State
from orchestrator.errors import (
    CheckoutError,
    ConcurrencyConflict,
    IdempotencyKeyReused,
    SessionAlreadyExists,
)
from orchestrator.jetstream.event_store import DuplicateCommand, EventStore, SessionHistory
from orchestrator.providers.base import (
    OpenRequest,
    PaymentProvider,
    ProviderError,
    ProviderSession,
    ProviderUnavailable,
)
from orchestrator.routing.engine import RouteRequest, route
from orchestrator.routing.health import HealthBoard
from orchestrator.routing.rules import RoutingRules
from orchestrator.services.handling import (
    Accepted,
    CommandContext,
    ExpiryEnforcer,
    OpenedAt,
    check_same_request,
)
from orchestrator.telemetry import Telemetry

__all__ = ["AllProvidersFailed", "CreateFlow"]


class AllProvidersFailed(CheckoutError):
    """Every candidate provider failed; the attempts are recorded on the session."""

    code = "all_providers_failed"


@dataclass
class _Draft:
    """Events decided so far, and the state they lead to."""

    state: State
    events: list[CheckoutEvent] = field(default_factory=list)
    expiry_enforcer: ExpiryEnforcer | None = None

    def apply(self, command: Command) -> None:
        for event in decide(self.state, command):
            self.events.append(event)
            self.state = evolve(self.state, event)


class CreateFlow:
    def __init__(
        self,
        store: EventStore,
        providers: Mapping[Provider, PaymentProvider],
        rules: RoutingRules,
        health: HealthBoard,
        *,
        clock: Callable[[], datetime],
        new_event_id: Callable[[], str],
        telemetry: Telemetry | None = None,
    ) -> None:
        self._telemetry = telemetry or Telemetry.disabled()
        self._tracer = self._telemetry.tracer("orchestrator.services.create_flow")
        self._store = store
        self._providers = providers
        self._rules = rules
        self._health = health
        self._clock = clock
        self._new_event_id = new_event_id

    async def create(self, command: CreateCheckoutSession, context: CommandContext) -> Accepted:
        history = await self._store.load(command.session_id)
        if history.result_of(context.command_id) is not None:
            check_same_request(history, context)
            return await self._answer_again(history)
        if history.events:
            raise SessionAlreadyExists(command.session_id)
        draft = _Draft(fold([]))
        draft.apply(command)
        with self._tracer.start_as_current_span("checkout.route") as span:
            decision = route(self._rules, RouteRequest.for_create(command), self._health.view())
            span.set_attributes(
                {
                    "checkout.route.rule": decision.explanation.matched_rule or "",
                    "checkout.route.provider": decision.provider.value,
                    "checkout.route.rules_version": decision.explanation.rules_version,
                }
            )
        draft.apply(
            RecordRouting(
                session_id=command.session_id,
                at=self._clock(),
                provider=decision.provider,
                explanation=decision.explanation,
            )
        )
        opened = await self._open_first(command, decision.explanation.candidates, draft)
        try:
            result = await self._store.append(
                command.session_id,
                draft.events,
                [self._metadata(context, e.occurred_at) for e in draft.events],
                expected_version=0,
            )
        except ConcurrencyConflict:
            return await self._after_race(command, context, duplicate=False)
        except DuplicateCommand:
            return await self._after_race(command, context, duplicate=True)
        if opened is None:
            raise self._all_failed(command.session_id, draft)
        return _created(
            draft.events, result.last_sequence, len(draft.events), opened, draft.expiry_enforcer
        )

    async def _open_first(
        self,
        command: CreateCheckoutSession,
        candidates: tuple[Provider, ...],
        draft: _Draft,
    ) -> ProviderSession | None:
        for index, provider in enumerate(candidates):
            attempt = index + 1
            attributes = {"checkout.provider": provider.value, "checkout.attempt": attempt}
            fallback = candidates[index + 1] if index + 1 < len(candidates) else None
            if not self._health.allow(provider):
                # routed while its circuit let calls through, but another create has just
                # claimed the half-open probe (or tripped it): skip it, as the router would now
                self._count_call(provider, "circuit_open")
                draft.apply(_circuit_open(command.session_id, self._clock(), provider, fallback))
                continue
            try:
                with self._tracer.start_as_current_span(
                    "checkout.provider.open", attributes=attributes
                ):
                    session = await self._providers[provider].open_session(
                        _open_request(command, attempt)
                    )
            except ProviderError as exc:
                self._count_call(provider, exc.code)
                self._record_outcome(provider, exc)
                draft.apply(_call_failed(command.session_id, self._clock(), exc, fallback))
                continue
            self._count_call(provider, "ok")
            self._health.record_success(provider)
            session, draft.expiry_enforcer = with_our_expiry(session, command.expires_at)
            draft.apply(_opened(command.session_id, self._clock(), session))
            return session
        return None

    def _count_call(self, provider: Provider, outcome: str) -> None:
        self._telemetry.metrics.provider_calls.add(
            1, {"provider": provider.value, "operation": "open", "outcome": outcome}
        )

    def _record_outcome(self, provider: Provider, exc: ProviderError) -> None:
        # a rejected request says nothing about the provider's health
        if isinstance(exc, ProviderUnavailable):
            self._health.record_failure(provider)

    async def _after_race(
        self, command: CreateCheckoutSession, context: CommandContext, *, duplicate: bool
    ) -> Accepted:
        history = await self._store.load(command.session_id)
        if history.result_of(context.command_id) is not None:
            check_same_request(history, context)
            return await self._answer_again(history)
        if duplicate:  # the server holds this command id, but on another session
            raise IdempotencyKeyReused
        raise SessionAlreadyExists(command.session_id)

    async def _answer_again(self, history: SessionHistory) -> Accepted:
        events = [r.event for r in history.events]
        state = fold(events)
        if isinstance(state, Failed):
            raise self._all_failed(history.session_id, _Draft(state, events))
        opened = next(e for e in reversed(events) if isinstance(e, ProviderSessionOpened))
        secret = None
        if opened.has_client_secret:
            session = await self._providers[opened.provider].retrieve_session(
                opened.provider_session_id
            )
            secret = session.client_secret
        return Accepted(
            history.session_id,
            history.version,
            appended=0,
            duplicate=True,
            opened=OpenedAt(
                opened.provider,
                opened.provider_session_id,
                opened.checkout_url,
                opened.expires_at,
                secret,
            ),
        )

    @staticmethod
    def _all_failed(session_id: str, draft: _Draft) -> AllProvidersFailed:
        attempts = [
            {"provider": e.provider.value, "error_code": e.error_code}
            for e in draft.events
            if e.type == "provider_call_failed"
        ]
        return AllProvidersFailed(
            f"no provider could open checkout session {session_id}",
            session_id=session_id,
            attempts=attempts,
        )

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


def _open_request(command: CreateCheckoutSession, attempt: int) -> OpenRequest:
    return OpenRequest(
        session_id=command.session_id,
        attempt=attempt,
        mode=command.mode,
        amount=command.requested_amount(),
        customer=command.customer,
        urls=command.urls,
        ui_mode=command.ui_mode,
        metadata=command.metadata,
        client_reference_id=command.client_reference_id,
        expires_at=command.expires_at,
    )


def _call_failed(
    session_id: str, at: datetime, exc: ProviderError, fallback: Provider | None
) -> RecordProviderCallFailed:
    return RecordProviderCallFailed(
        session_id=session_id,
        at=at,
        provider=exc.provider,
        error_code=exc.code,
        message=exc.message[:1000],
        retryable=exc.retryable,
        fallback=fallback,
    )


def _circuit_open(
    session_id: str, at: datetime, provider: Provider, fallback: Provider | None
) -> RecordProviderCallFailed:
    return RecordProviderCallFailed(
        session_id=session_id,
        at=at,
        provider=provider,
        error_code="circuit_open",
        message=f"not called: the circuit of {provider.value} is not closed (probe in flight)",
        retryable=True,
        fallback=fallback,
    )


def _opened(session_id: str, at: datetime, session: ProviderSession) -> RecordProviderSessionOpened:
    return RecordProviderSessionOpened(
        session_id=session_id,
        at=at,
        provider=session.provider,
        provider_session_id=session.provider_session_id,
        checkout_url=session.checkout_url,
        expires_at=session.expires_at,
        livemode=session.livemode,
        has_client_secret=session.client_secret is not None,
        amounts=session.amounts,
        references=session.references,
    )


def with_our_expiry(
    session: ProviderSession, ours: datetime | None
) -> tuple[ProviderSession, ExpiryEnforcer | None]:
    """The session with the expiry that holds, and who enforces it: ours when the provider
    would keep the session open longer or ignores ours (lomi applies its own 60 minutes),
    closed then by the settlement sweeper; else the provider's own."""
    if ours is None or (session.expires_at is not None and session.expires_at <= ours):
        return session, ("provider" if session.expires_at is not None else None)
    return session.model_copy(update={"expires_at": ours}), "orchestrator"


def _created(
    events: list[CheckoutEvent],
    sequence: int,
    appended: int,
    session: ProviderSession,
    enforcer: ExpiryEnforcer | None,
) -> Accepted:
    opened = OpenedAt(
        session.provider,
        session.provider_session_id,
        session.checkout_url,
        session.expires_at,
        session.client_secret,
        enforcer,
    )
    return Accepted(events[0].session_id, sequence, appended, opened=opened)
