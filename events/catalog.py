"""Every change in a checkout session's life, as one frozen event type each.

A published event shape is never edited: a change is a new ``schema_version`` of the
model here plus a pure upcaster in `events.upcasting` from the old shape, with a
stored sample of the old version under ``tests/event_samples``.

The ``type`` string is also the last token of the event's subject, so it holds no dots.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from events.privacy import ErasedCustomer, SealedCustomer, SubjectId
from events.values import (
    AbsoluteUrl,
    Amounts,
    Customer,
    Metadata,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    RequestedAmount,
    SessionUrls,
    UtcDatetime,
    Value,
)

__all__ = [
    "EVENT_TYPES",
    "AsyncPaymentFailed",
    "AsyncPaymentSucceeded",
    "CheckoutCanceled",
    "CheckoutCompleted",
    "CheckoutEvent",
    "CheckoutExpired",
    "CheckoutRequested",
    "CheckoutRouted",
    "CustomerData",
    "CustomerForgotten",
    "DroppedCandidate",
    "EventBase",
    "PaymentProcessing",
    "ProviderCallFailed",
    "ProviderSessionOpened",
    "RoutingExplanation",
    "UiMode",
    "event_adapter",
]

UiMode = Literal["hosted", "embedded"]

CustomerData = Customer | SealedCustomer | ErasedCustomer
"""A customer as an event holds it: sealed as stored (schema v2), opened into `Customer`
or `ErasedCustomer` by a reader with the key store; clear in events written before v2."""


class EventBase(Value):
    session_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    occurred_at: UtcDatetime


class CheckoutRequested(EventBase):
    """The merchant asked for a checkout session; nothing is open at a provider yet."""

    type: Literal["requested"] = "requested"
    schema_version: Literal[2] = 2
    mode: Mode
    amount: RequestedAmount
    subject: SubjectId | None = None
    """The data subject the customer's personal data is sealed for (None: nothing personal)."""
    customer: CustomerData = Customer()
    urls: SessionUrls = SessionUrls()
    ui_mode: UiMode = "hosted"
    metadata: Metadata = Field(default_factory=dict)
    client_reference_id: str | None = Field(default=None, max_length=200)
    expires_at: UtcDatetime | None = None


class DroppedCandidate(Value):
    provider: Provider
    reason: str


class RoutingExplanation(Value):
    """Why the router chose what it chose: enough to audit the decision later."""

    rules_version: str
    matched_rule: str | None
    candidates: tuple[Provider, ...]
    dropped: tuple[DroppedCandidate, ...] = ()


class CheckoutRouted(EventBase):
    type: Literal["routed"] = "routed"
    schema_version: Literal[1] = 1
    provider: Provider
    attempt: int = Field(ge=1)
    explanation: RoutingExplanation


class ProviderSessionOpened(EventBase):
    """The provider holds a session the customer can pay; the client secret is not here."""

    type: Literal["provider_session_opened"] = "provider_session_opened"
    schema_version: Literal[1] = 1
    provider: Provider
    attempt: int = Field(ge=1)
    provider_session_id: str = Field(min_length=1, max_length=255)
    checkout_url: AbsoluteUrl | None = None
    expires_at: UtcDatetime | None = None
    livemode: bool = False
    has_client_secret: bool = False
    amounts: Amounts | None = None
    references: ProviderReferences = ProviderReferences()


class ProviderCallFailed(EventBase):
    """A provider could not open the session; ``fallback`` is the next one tried, if any."""

    type: Literal["provider_call_failed"] = "provider_call_failed"
    schema_version: Literal[1] = 1
    provider: Provider
    attempt: int = Field(ge=1)
    error_code: str = Field(min_length=1, max_length=100)
    message: str = Field(max_length=1000)
    retryable: bool
    fallback: Provider | None = None


class PaymentProcessing(EventBase):
    """The customer submitted payment; the provider has not settled it yet."""

    type: Literal["processing"] = "processing"
    schema_version: Literal[1] = 1
    provider_status: str | None = None


class CheckoutCompleted(EventBase):
    """The customer finished checkout. ``unpaid`` means a delayed method is still settling."""

    type: Literal["completed"] = "completed"
    schema_version: Literal[2] = 2
    payment_status: PaymentStatus
    amounts: Amounts | None = None
    subject: SubjectId | None = None
    customer: CustomerData | None = None
    references: ProviderReferences = ProviderReferences()


class AsyncPaymentSucceeded(EventBase):
    type: Literal["async_payment_succeeded"] = "async_payment_succeeded"
    schema_version: Literal[1] = 1


class AsyncPaymentFailed(EventBase):
    type: Literal["async_payment_failed"] = "async_payment_failed"
    schema_version: Literal[1] = 1
    reason: str | None = Field(default=None, max_length=1000)


class CheckoutExpired(EventBase):
    type: Literal["expired"] = "expired"
    schema_version: Literal[1] = 1
    reason: Literal["provider", "sweeper", "merchant"] = "provider"


class CheckoutCanceled(EventBase):
    type: Literal["canceled"] = "canceled"
    schema_version: Literal[1] = 1
    reason: str | None = Field(default=None, max_length=1000)


class CustomerForgotten(EventBase):
    """A data subject was forgotten: its key is destroyed, its personal data unreadable.

    Not a session's event: ``session_id`` is the subject's id, so it has a subject of its
    own in the stream. It holds no personal data; ``sessions`` are the checkout sessions
    whose data was sealed for the subject, ``metadata_keys`` the metadata names declared
    personal when it was forgotten (read models drop them)."""

    type: Literal["customer_forgotten"] = "customer_forgotten"
    schema_version: Literal[1] = 1
    subject: SubjectId
    sessions: tuple[str, ...] = ()
    metadata_keys: tuple[str, ...] = ()


CheckoutEvent = Annotated[
    CheckoutRequested
    | CheckoutRouted
    | ProviderSessionOpened
    | ProviderCallFailed
    | PaymentProcessing
    | CheckoutCompleted
    | AsyncPaymentSucceeded
    | AsyncPaymentFailed
    | CheckoutExpired
    | CheckoutCanceled
    | CustomerForgotten,
    Field(discriminator="type"),
]

event_adapter: TypeAdapter[CheckoutEvent] = TypeAdapter(CheckoutEvent)

EVENT_TYPES: dict[str, type[EventBase]] = {
    model.model_fields["type"].default: model
    for model in (
        CheckoutRequested,
        CheckoutRouted,
        ProviderSessionOpened,
        ProviderCallFailed,
        PaymentProcessing,
        CheckoutCompleted,
        AsyncPaymentSucceeded,
        AsyncPaymentFailed,
        CheckoutExpired,
        CheckoutCanceled,
        CustomerForgotten,
    )
}
"""Event type string -> model of its current schema version."""
