"""A checkout session as the read models see it, and the pure functions that fold events into it.

Owns the one definition of a session's read-side state, used everywhere a state is needed:
the sessions read model (row = `SessionState`), the daily totals (bucket = `Core`), and the
``as_of`` query (folding a session's stored timeline up to an instant).

    advance(core | None, recorded) -> Core                 lifecycle, status, provider, amount
    apply(state | None, recorded) -> SessionState          every canonical field of the session
    fold(recorded events) -> SessionState | None

Guarantees: pure (no clock, no I/O) and deterministic, so replaying the same events gives
the same state; an event at or below ``last_sequence`` changes nothing (idempotent). An
event that cannot follow (anything but a creation for an unknown session, a second
creation) raises `Unapplicable`, and the projector parks it. Otherwise the fold is
tolerant: the decider already refused illegal transitions, so a late event (a provider's
"opened" after the completion webhook) only fills in what it carries.

Lifecycle -> public status: requested, routed, open -> ``open``; processing ->
``processing``; completed -> ``complete``; failed -> ``failed``; expired and canceled ->
``expired`` (a canceled session is closed like an expired one, as at Stripe).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from events.values import PaymentStatus, SessionStatus
from projections.decoding import (
    Amounts,
    AsyncPaymentFailed,
    AsyncPaymentSucceeded,
    CheckoutCanceled,
    CheckoutCompleted,
    CheckoutExpired,
    CheckoutRequested,
    CheckoutRouted,
    PaymentProcessing,
    ProviderCallFailed,
    ProviderSessionOpened,
    StoredEvent,
    StoredPayload,
    without_none,
)
from projections.errors import ProjectionError

__all__ = [
    "Core",
    "Lifecycle",
    "SessionState",
    "Unapplicable",
    "advance",
    "apply",
    "fold",
]

JsonObject = Mapping[str, Any]


class Unapplicable(ProjectionError):
    """The event cannot follow the session's state (the projector parks it)."""

    code = "unapplicable_event"


class Lifecycle(StrEnum):
    REQUESTED = "requested"
    ROUTED = "routed"
    OPEN = "open"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELED = "canceled"


_STATUS = {
    Lifecycle.REQUESTED: SessionStatus.OPEN,
    Lifecycle.ROUTED: SessionStatus.OPEN,
    Lifecycle.OPEN: SessionStatus.OPEN,
    Lifecycle.PROCESSING: SessionStatus.PROCESSING,
    Lifecycle.COMPLETED: SessionStatus.COMPLETE,
    Lifecycle.FAILED: SessionStatus.FAILED,
    Lifecycle.EXPIRED: SessionStatus.EXPIRED,
    Lifecycle.CANCELED: SessionStatus.EXPIRED,
}
_BEFORE_OPEN = frozenset({Lifecycle.REQUESTED, Lifecycle.ROUTED})


class Core(msgspec.Struct, frozen=True):
    """What decides a session's bucket in the totals: lifecycle, provider, currency, amount."""

    session_id: str
    lifecycle: Lifecycle
    currency: str
    created_at: datetime
    amount_requested: int | None
    amount_total: int | None = None
    provider: str | None = None
    attempt: int | None = None
    payment_status: str | None = None
    last_sequence: int = 0

    @property
    def status(self) -> SessionStatus:
        return _STATUS[self.lifecycle]

    @property
    def amount(self) -> int | None:
        """The best known total: the provider's when it computed one, else the requested."""
        return self.amount_total if self.amount_total is not None else self.amount_requested


def _missing(event: StoredPayload) -> Unapplicable:
    return Unapplicable(
        f"{event.type} for checkout session {event.session_id}, whose creation was never projected"
    )


def _total(amounts: Amounts | None, current: int | None) -> int | None:
    """The provider's total after an event that may carry new amounts (which replace)."""
    return current if amounts is None else amounts.total


def _changes(core: Core, event: StoredPayload) -> dict[str, Any]:  # noqa: C901, PLR0911
    """The core fields an event changes (one case per event type)."""
    match event:
        case CheckoutRouted(provider=provider, attempt=attempt):
            return {"lifecycle": Lifecycle.ROUTED, "provider": provider, "attempt": attempt}
        case ProviderSessionOpened():
            lifecycle = Lifecycle.OPEN if core.lifecycle in _BEFORE_OPEN else core.lifecycle
            return {
                "lifecycle": lifecycle,
                "provider": event.provider,
                "attempt": event.attempt,
                "amount_total": _total(event.amounts, core.amount_total),
            }
        case ProviderCallFailed(fallback=None):
            return {"lifecycle": Lifecycle.FAILED}
        case ProviderCallFailed(fallback=fallback, attempt=attempt):
            return {"lifecycle": Lifecycle.ROUTED, "provider": fallback, "attempt": attempt + 1}
        case PaymentProcessing():
            return {"lifecycle": Lifecycle.PROCESSING}
        case CheckoutCompleted(payment_status=payment_status, amounts=amounts):
            return {
                "lifecycle": Lifecycle.COMPLETED,
                "payment_status": payment_status,
                "amount_total": _total(amounts, core.amount_total),
            }
        case AsyncPaymentSucceeded():
            return {"lifecycle": Lifecycle.COMPLETED, "payment_status": PaymentStatus.PAID}
        case AsyncPaymentFailed():
            return {"lifecycle": Lifecycle.FAILED}
        case CheckoutExpired():
            return {"lifecycle": Lifecycle.EXPIRED}
        case CheckoutCanceled():
            return {"lifecycle": Lifecycle.CANCELED}
    raise Unapplicable(f"event type {event.type} has no effect defined on a session")


def advance(core: Core | None, recorded: StoredEvent) -> Core:
    """Fold one event into the core state; unchanged when already applied."""
    event = recorded.event
    if core is not None and recorded.sequence <= core.last_sequence:
        return core
    if isinstance(event, CheckoutRequested):
        if core is not None:
            raise Unapplicable(f"checkout session {event.session_id} is created twice")
        return Core(
            session_id=event.session_id,
            lifecycle=Lifecycle.REQUESTED,
            currency=event.amount.currency,
            created_at=event.occurred_at,
            amount_requested=event.amount.total,
            last_sequence=recorded.sequence,
        )
    if core is None:
        raise _missing(event)
    return msgspec.structs.replace(core, last_sequence=recorded.sequence, **_changes(core, event))


class SessionState(msgspec.Struct, frozen=True):
    """One row of the sessions read model. JSON-shaped fields hold plain JSON values."""

    core: Core
    mode: str
    ui_mode: str
    line_items: tuple[JsonObject, ...]
    customer: JsonObject
    urls: JsonObject
    metadata: JsonObject
    client_reference_id: str | None
    expires_at: datetime | None
    updated_at: datetime
    event_count: int = 1
    provider_session_id: str | None = None
    livemode: bool = False
    has_client_secret: bool = False
    amounts: JsonObject | None = None
    checkout_url: str | None = None
    provider_status: str | None = None
    provider_references: JsonObject = msgspec.field(default_factory=dict)
    failure_code: str | None = None
    status_reason: str | None = None
    completed_at: datetime | None = None

    @property
    def session_id(self) -> str:
        return self.core.session_id

    @property
    def last_sequence(self) -> int:
        return self.core.last_sequence


def _dump(value: msgspec.Struct) -> JsonObject:
    """A nested value as the read model keeps it (its unset fields left out)."""
    dumped: JsonObject = msgspec.to_builtins(value)
    return dumped


def _merged(current: JsonObject, update: JsonObject | None) -> JsonObject:
    """``current`` with the fields ``update`` sets; None never erases."""
    if not update:
        return current
    return {**current, **without_none(update)}


def _customer(event: CheckoutRequested) -> JsonObject:
    """The customer as the read model keeps it: with its data subject, if it has one."""
    dumped: JsonObject = without_none(event.customer)
    return {**dumped, "subject": event.subject} if event.subject else dumped


def _created(event: CheckoutRequested, core: Core) -> SessionState:
    return SessionState(
        core=core,
        mode=event.mode.value,
        ui_mode=event.ui_mode,
        line_items=tuple(_dump(item) for item in event.amount.line_items),
        customer=_customer(event),
        urls=without_none(event.urls),
        metadata=dict(event.metadata),
        client_reference_id=event.client_reference_id,
        expires_at=event.expires_at,
        updated_at=event.occurred_at,
    )


def _details(state: SessionState, event: StoredPayload) -> dict[str, Any]:  # noqa: PLR0911
    """The non-core fields an event changes."""
    match event:
        case ProviderSessionOpened():
            return {
                "provider_session_id": event.provider_session_id,
                "livemode": event.livemode,
                "has_client_secret": event.has_client_secret,
                "checkout_url": event.checkout_url or state.checkout_url,
                "expires_at": event.expires_at or state.expires_at,
                "amounts": _dump(event.amounts) if event.amounts else state.amounts,
                "provider_references": _merged(state.provider_references, event.references),
            }
        case ProviderCallFailed(fallback=None):
            return {"failure_code": event.error_code, "status_reason": event.message}
        case PaymentProcessing():
            return {"provider_status": event.provider_status}
        case CheckoutCompleted():
            return {
                "amounts": _dump(event.amounts) if event.amounts else state.amounts,
                "customer": _merged(state.customer, event.customer),
                "provider_references": _merged(state.provider_references, event.references),
                "completed_at": event.occurred_at,
            }
        case AsyncPaymentFailed():
            return {"failure_code": "async_payment_failed", "status_reason": event.reason}
        case CheckoutExpired() | CheckoutCanceled():
            return {"status_reason": event.reason}
    return {}


def apply(state: SessionState | None, recorded: StoredEvent) -> SessionState:
    """Fold one recorded event into a session's state; unchanged when already applied."""
    if state is not None and recorded.sequence <= state.last_sequence:
        return state
    core = advance(state.core if state else None, recorded)
    event = recorded.event
    if state is None:
        assert isinstance(event, CheckoutRequested)  # noqa: S101 - advance checked it
        return _created(event, core)
    return msgspec.structs.replace(
        state,
        core=core,
        updated_at=max(state.updated_at, event.occurred_at),
        event_count=state.event_count + 1,
        **_details(state, event),
    )


def fold(events: Iterable[StoredEvent], state: SessionState | None = None) -> SessionState | None:
    for recorded in events:
        state = apply(state, recorded)
    return state
