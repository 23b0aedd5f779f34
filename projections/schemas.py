"""What the queries return: frozen pydantic models shared by the HTTP API and the Python client.

The API serialises them (and publishes their JSON schema in OpenAPI); `QueryClient`
validates responses back into them. `CheckoutSession.from_state` is the one mapping from
the fold's `SessionState`, used for stored rows and ``as_of`` folds alike.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from events.values import SessionStatus
from projections.fold import SessionState

__all__ = [
    "CheckoutSession",
    "DroppedProvider",
    "ErrorBody",
    "ParkedEventBody",
    "ParkedEventList",
    "ProviderStats",
    "ProviderTotal",
    "RoutingDecision",
    "SessionAmounts",
    "SessionPage",
    "TimelineEvent",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class SessionAmounts(_Frozen):
    subtotal: int | None = None
    discount: int | None = None
    tax: int | None = None
    shipping: int | None = None
    total: int | None = None


class CheckoutSession(_Frozen):
    """A checkout session as the read model holds it (amounts in minor units)."""

    id: str
    status: SessionStatus
    lifecycle: str
    mode: str
    ui_mode: str
    provider: str | None
    attempt: int | None
    provider_session_id: str | None
    livemode: bool
    has_client_secret: bool
    currency: str
    amount: int | None
    amount_requested: int | None
    amounts: SessionAmounts | None
    line_items: list[dict[str, Any]]
    customer: dict[str, Any]
    customer_email: str | None
    customer_country: str | None
    urls: dict[str, Any]
    checkout_url: str | None
    expires_at: datetime | None
    payment_status: str | None
    provider_status: str | None
    provider_references: dict[str, Any]
    metadata: dict[str, str]
    client_reference_id: str | None
    failure_code: str | None
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    event_count: int
    last_sequence: int

    @classmethod
    def from_state(cls, state: SessionState) -> CheckoutSession:
        core = state.core
        amounts = state.amounts
        return cls(
            id=core.session_id,
            status=core.status,
            lifecycle=core.lifecycle.value,
            mode=state.mode,
            ui_mode=state.ui_mode,
            provider=core.provider,
            attempt=core.attempt,
            provider_session_id=state.provider_session_id,
            livemode=state.livemode,
            has_client_secret=state.has_client_secret,
            currency=core.currency,
            amount=core.amount,
            amount_requested=core.amount_requested,
            amounts=SessionAmounts.model_validate(amounts) if amounts else None,
            line_items=[dict(item) for item in state.line_items],
            customer=dict(state.customer),
            customer_email=state.customer.get("email"),
            customer_country=state.customer.get("country"),
            urls=dict(state.urls),
            checkout_url=state.checkout_url,
            expires_at=state.expires_at,
            payment_status=core.payment_status,
            provider_status=state.provider_status,
            provider_references=dict(state.provider_references),
            metadata=dict(state.metadata),
            client_reference_id=state.client_reference_id,
            failure_code=state.failure_code,
            status_reason=state.status_reason,
            created_at=core.created_at,
            updated_at=state.updated_at,
            completed_at=state.completed_at,
            event_count=state.event_count,
            last_sequence=core.last_sequence,
        )


class SessionPage(_Frozen):
    data: list[CheckoutSession]
    next_cursor: str | None
    """Pass it as ``cursor`` for the next page; None on the last page."""


class TimelineEvent(_Frozen):
    sequence: int
    type: str
    schema_version: int
    occurred_at: datetime
    event_id: str
    command_id: str
    correlation_id: str
    causation_id: str
    traceparent: str | None
    trace_id: str | None
    payload: dict[str, Any]


class DroppedProvider(_Frozen):
    provider: str
    reason: str


class RoutingDecision(_Frozen):
    sequence: int
    kind: str
    """``routed`` (the router's choice) or ``fallback`` (after a provider failed)."""
    occurred_at: datetime
    attempt: int
    provider: str
    rules_version: str | None
    matched_rule: str | None
    candidates: list[str]
    dropped: list[DroppedProvider]


class ProviderTotal(_Frozen):
    day: date | None = None
    provider: str | None
    """None for sessions not routed to any provider."""
    currency: str
    status: SessionStatus
    sessions: int
    amount: int


class ProviderStats(_Frozen):
    start: date
    end: date
    data: list[ProviderTotal]


class ErrorBody(_Frozen):
    code: str
    message: str


class ParkedEventBody(_Frozen):
    """An event a projection could not apply (its payload stays in the database)."""

    projection: str
    version: int
    partition: int
    sequence: int
    subject: str
    event_type: str | None
    error: str
    parked_at: datetime


class ParkedEventList(_Frozen):
    """Parked events of the serving versions, oldest first; ``count`` is all of them."""

    count: int
    data: list[ParkedEventBody]
