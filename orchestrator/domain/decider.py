"""The session lifecycle as a pure decider: ``decide`` and ``evolve``.

No clock, no ids, no I/O: time and ids arrive on the command. ``decide`` either
returns the events a command causes (possibly none, when the command asks for what
already happened) or raises a typed error; it never returns half a result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from events.catalog import (
    AsyncPaymentFailed,
    AsyncPaymentSucceeded,
    CheckoutCanceled,
    CheckoutCompleted,
    CheckoutEvent,
    CheckoutExpired,
    CheckoutRequested,
    CheckoutRouted,
    PaymentProcessing,
    ProviderCallFailed,
    ProviderSessionOpened,
)
from events.values import PaymentStatus
from orchestrator.domain.commands import (
    CancelCheckoutSession,
    Command,
    CompleteCheckoutSession,
    CreateCheckoutSession,
    ExpireCheckoutSession,
    MarkProcessing,
    RecordAsyncPaymentResult,
    RecordProviderCallFailed,
    RecordProviderSessionOpened,
    RecordRouting,
)
from orchestrator.domain.state import (
    Absent,
    Canceled,
    Completed,
    Expired,
    Failed,
    Live,
    Opened,
    Processing,
    Requested,
    Routed,
    State,
)
from orchestrator.errors import (
    CorruptHistory,
    IllegalTransition,
    InvalidCommand,
    SessionAlreadyExists,
    SessionNotFound,
)

__all__ = ["INITIAL", "decide", "evolve", "fold"]

INITIAL: State = Absent()


def decide(state: State, command: Command) -> list[CheckoutEvent]:
    if isinstance(command, CreateCheckoutSession):
        return _create(state, command)
    if isinstance(state, Absent):
        raise SessionNotFound(command.session_id)
    return _DECIDERS[type(command)](state, command)


def _illegal(state: State, command: Command) -> IllegalTransition:
    return IllegalTransition(command.session_id, state.kind, command.type)


def _create(state: State, c: CreateCheckoutSession) -> list[CheckoutEvent]:
    if not isinstance(state, Absent):
        raise SessionAlreadyExists(c.session_id)
    return [
        CheckoutRequested(
            session_id=c.session_id,
            occurred_at=c.at,
            mode=c.mode,
            amount=c.requested_amount(),
            customer=c.customer,
            urls=c.urls,
            ui_mode=c.ui_mode,
            metadata=c.metadata,
            client_reference_id=c.client_reference_id,
            expires_at=c.expires_at,
        )
    ]


def _route(state: Live, c: RecordRouting) -> list[CheckoutEvent]:
    if not isinstance(state, Requested):
        raise _illegal(state, c)
    return [
        CheckoutRouted(
            session_id=c.session_id,
            occurred_at=c.at,
            provider=c.provider,
            attempt=1,
            explanation=c.explanation,
        )
    ]


def _opened_event(attempt: int, c: RecordProviderSessionOpened) -> ProviderSessionOpened:
    return ProviderSessionOpened(
        session_id=c.session_id,
        occurred_at=c.at,
        provider=c.provider,
        attempt=attempt,
        provider_session_id=c.provider_session_id,
        checkout_url=c.checkout_url,
        expires_at=c.expires_at,
        livemode=c.livemode,
        has_client_secret=c.has_client_secret,
        amounts=c.amounts,
        references=c.references,
    )


def _open(state: Live, c: RecordProviderSessionOpened) -> list[CheckoutEvent]:
    match state:
        case Routed(provider=provider, attempt=attempt) if provider is c.provider:
            return [_opened_event(attempt, c)]
        case Opened() | Processing() if state.provider_session_id == c.provider_session_id:
            return []
        case Completed(provider_session_id=None, provider=provider, attempt=attempt) if (
            provider is c.provider
        ):
            # the completion webhook overtook the provider's create response
            return [_opened_event(attempt, c)]
        case Completed(provider_session_id=psid) if psid == c.provider_session_id:
            return []
    raise _illegal(state, c)


def _call_failed(state: Live, c: RecordProviderCallFailed) -> list[CheckoutEvent]:
    if not (isinstance(state, Routed) and state.provider is c.provider):
        raise _illegal(state, c)
    return [
        ProviderCallFailed(
            session_id=c.session_id,
            occurred_at=c.at,
            provider=c.provider,
            attempt=state.attempt,
            error_code=c.error_code,
            message=c.message,
            retryable=c.retryable,
            fallback=c.fallback,
        )
    ]


def _processing(state: Live, c: MarkProcessing) -> list[CheckoutEvent]:
    if isinstance(state, Processing | Completed):
        # a late "payment submitted" notice (Polar's confirmed after succeeded) says nothing new
        return []
    if not isinstance(state, Opened):
        raise _illegal(state, c)
    return [
        PaymentProcessing(
            session_id=c.session_id, occurred_at=c.at, provider_status=c.provider_status
        )
    ]


def _complete(state: Live, c: CompleteCheckoutSession) -> list[CheckoutEvent]:
    if isinstance(state, Completed) and state.payment_status is c.payment_status:
        return []
    if not isinstance(state, Routed | Opened | Processing):
        raise _illegal(state, c)
    currency = state.request.amount.currency
    if c.amounts is not None and c.amounts.currency != currency:
        raise InvalidCommand(
            f"completion amounts are in {c.amounts.currency}, the session is in {currency}",
            [{"loc": ["amounts", "currency"], "msg": "currency differs from the session's"}],
        )
    return [
        CheckoutCompleted(
            session_id=c.session_id,
            occurred_at=c.at,
            payment_status=c.payment_status,
            amounts=c.amounts,
            customer=c.customer,
            references=c.references,
        )
    ]


def _async_result(state: Live, c: RecordAsyncPaymentResult) -> list[CheckoutEvent]:
    match state:
        case Completed(payment_status=PaymentStatus.UNPAID):
            if c.succeeded:
                return [AsyncPaymentSucceeded(session_id=c.session_id, occurred_at=c.at)]
            return [AsyncPaymentFailed(session_id=c.session_id, occurred_at=c.at, reason=c.reason)]
        case Completed(payment_status=PaymentStatus.PAID) if c.succeeded:
            return []
        case Failed(cause="async_payment") if not c.succeeded:
            return []
    raise _illegal(state, c)


def _expire(state: Live, c: ExpireCheckoutSession) -> list[CheckoutEvent]:
    if isinstance(state, Expired | Canceled):
        # closed without payment already: the provider's own expiry after our cancel
        return []
    if not isinstance(state, Requested | Routed | Opened):
        raise _illegal(state, c)
    return [CheckoutExpired(session_id=c.session_id, occurred_at=c.at, reason=c.reason)]


def _cancel(state: Live, c: CancelCheckoutSession) -> list[CheckoutEvent]:
    if isinstance(state, Canceled | Expired):
        return []
    if not isinstance(state, Requested | Routed | Opened):
        raise _illegal(state, c)
    return [CheckoutCanceled(session_id=c.session_id, occurred_at=c.at, reason=c.reason)]


_DECIDERS: dict[type[Any], Callable[[Live, Any], list[CheckoutEvent]]] = {
    RecordRouting: _route,
    RecordProviderSessionOpened: _open,
    RecordProviderCallFailed: _call_failed,
    MarkProcessing: _processing,
    CompleteCheckoutSession: _complete,
    RecordAsyncPaymentResult: _async_result,
    ExpireCheckoutSession: _expire,
    CancelCheckoutSession: _cancel,
}


def evolve(state: State, event: CheckoutEvent) -> State:  # noqa: C901, PLR0911
    """Apply one stored event. An event the state cannot take means a corrupt stream."""
    match state, event:
        case Absent(), CheckoutRequested():
            return Requested(event)
        case Requested(request=r), CheckoutRouted(provider=p, attempt=a):
            return Routed(r, p, a)
        case Routed(request=r, provider=p, attempt=a), ProviderSessionOpened():
            return Opened(r, p, a, event.provider_session_id)
        case Completed(), ProviderSessionOpened():
            return Completed(
                state.request,
                state.provider,
                state.attempt,
                event.provider_session_id,
                state.payment_status,
            )
        case Routed(request=r, attempt=a), ProviderCallFailed(fallback=None):
            return Failed(r, "no_provider")
        case Routed(request=r, attempt=a), ProviderCallFailed(fallback=fallback) if fallback:
            return Routed(r, fallback, a + 1)
        case Opened(request=r, provider=p, attempt=a, provider_session_id=s), PaymentProcessing():
            return Processing(r, p, a, s)
        case Routed() | Opened() | Processing(), CheckoutCompleted(payment_status=status):
            psid = None if isinstance(state, Routed) else state.provider_session_id
            return Completed(state.request, state.provider, state.attempt, psid, status)
        case Completed(), AsyncPaymentSucceeded():
            return Completed(
                state.request,
                state.provider,
                state.attempt,
                state.provider_session_id,
                PaymentStatus.PAID,
            )
        case Completed(request=r), AsyncPaymentFailed():
            return Failed(r, "async_payment")
        case Requested() | Routed() | Opened(), CheckoutExpired():
            return Expired(state.request)
        case Requested() | Routed() | Opened(), CheckoutCanceled():
            return Canceled(state.request)
    raise CorruptHistory(
        f"event {event.type} cannot follow state {state.kind} (session {event.session_id})",
        session_id=event.session_id,
    )


def fold(events: Iterable[CheckoutEvent], state: State = INITIAL) -> State:
    for event in events:
        state = evolve(state, event)
    return state
