"""The provider contract: what every adapter takes, returns and raises.

- `OpenRequest` -> `PaymentProvider.open_session` -> `ProviderSession` (canonical).
- A provider status nobody mapped becomes ``SessionStatus.OPEN`` with
  ``PaymentStatus.UNPAID`` (pending), never complete or paid.
- HTTP and SDK exceptions stop at the adapter: callers only see `ProviderError`s.

    ProviderError (CheckoutError)      provider_failed
    ├── ProviderUnavailable            provider_unavailable   5xx, timeout, connection: retryable
    ├── ProviderRejected               provider_rejected      4xx: the request itself is wrong
    ├── UnsupportedOperation           unsupported_operation  e.g. expire at lomi
    └── WebhookRejected                webhook_rejected       bad signature, stale or future time
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import Field, SecretStr

from events.catalog import UiMode
from events.money import CurrencyCode
from events.values import (
    Amounts,
    Customer,
    LineItem,
    Metadata,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    RequestedAmount,
    SessionStatus,
    SessionUrls,
    UtcDatetime,
    Value,
)
from orchestrator.errors import CheckoutError

__all__ = [
    "Capabilities",
    "OpenRequest",
    "PaymentProvider",
    "ProviderError",
    "ProviderRejected",
    "ProviderSession",
    "ProviderUnavailable",
    "UnsupportedOperation",
    "WebhookEvent",
    "WebhookKind",
    "WebhookRejected",
    "idempotency_key",
]


class ProviderError(CheckoutError):
    code = "provider_failed"

    def __init__(
        self, provider: Provider, message: str, *, retryable: bool, **details: Any
    ) -> None:
        super().__init__(message, provider=provider.value, retryable=retryable, **details)
        self.provider = provider
        self.retryable = retryable


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"

    def __init__(self, provider: Provider, message: str, **details: Any) -> None:
        super().__init__(provider, message, retryable=True, **details)


class ProviderRejected(ProviderError):
    code = "provider_rejected"

    def __init__(self, provider: Provider, message: str, **details: Any) -> None:
        super().__init__(provider, message, retryable=False, **details)


class UnsupportedOperation(ProviderError):
    code = "unsupported_operation"

    def __init__(self, provider: Provider, operation: str) -> None:
        super().__init__(
            provider, f"{provider.value} has no {operation} operation", retryable=False
        )


class WebhookRejected(ProviderError):
    code = "webhook_rejected"

    def __init__(self, provider: Provider, reason: str) -> None:
        super().__init__(provider, f"{provider.value} webhook rejected: {reason}", retryable=False)


class Capabilities(Value):
    """What a provider takes: the router's capability filter reads this."""

    currencies: frozenset[CurrencyCode]
    modes: frozenset[Mode]
    min_amount: dict[CurrencyCode, int] = Field(default_factory=dict)
    max_amount: dict[CurrencyCode, int] = Field(default_factory=dict)
    # OpenMeter refuses a hosted session without one ("success url is required for hosted
    # ui mode"): the router drops such a provider for such a request instead of failing.
    hosted_requires_success_url: bool = False


def idempotency_key(session_id: str, attempt: int) -> str:
    """The same (session, attempt) never opens a second provider session."""
    return f"checkout-{session_id}-attempt-{attempt}"


class OpenRequest(Value):
    session_id: str
    attempt: int = Field(ge=1)
    mode: Mode
    amount: RequestedAmount
    customer: Customer = Customer()
    urls: SessionUrls = SessionUrls()
    ui_mode: UiMode = "hosted"
    metadata: Metadata = Field(default_factory=dict)
    client_reference_id: str | None = None
    expires_at: UtcDatetime | None = None

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.session_id, self.attempt)


class ProviderSession(Value):
    """The canonical checkout session, as any provider reports it."""

    provider: Provider
    provider_session_id: str
    session_id: str | None = None  # ours, when the provider echoes it (metadata, reference)
    status: SessionStatus
    payment_status: PaymentStatus
    mode: Mode
    currency: CurrencyCode | None = None
    amounts: Amounts | None = None
    customer: Customer = Customer()
    line_items: tuple[LineItem, ...] = ()
    checkout_url: str | None = None
    urls: SessionUrls = SessionUrls()
    client_secret: SecretStr | None = None
    created_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    client_reference_id: str | None = None
    livemode: bool = False
    references: ProviderReferences = ProviderReferences()
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


WebhookKind = Literal[
    "completed",
    "processing",
    "expired",
    "async_payment_succeeded",
    "async_payment_failed",
    "payment_failed",
    "ignored",
]


class WebhookEvent(Value):
    """A verified provider notification, translated to what it means for a session."""

    provider: Provider
    event_id: str
    kind: WebhookKind
    provider_type: str
    provider_session_id: str | None = None
    session: ProviderSession | None = None
    occurred_at: UtcDatetime | None = None
    # When the notification is about a payment, not the session (lomi's transaction row):
    # our session id if the payment echoes our metadata, and what the payment says was paid.
    session_id: str | None = None
    amounts: Amounts | None = None


class PaymentProvider(Protocol):
    @property
    def name(self) -> Provider: ...

    @property
    def capabilities(self) -> Capabilities: ...

    async def open_session(self, request: OpenRequest) -> ProviderSession: ...

    async def retrieve_session(self, provider_session_id: str) -> ProviderSession: ...

    async def expire_session(self, provider_session_id: str) -> ProviderSession:
        """Raise `UnsupportedOperation` where the provider has no expire."""
        ...

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Check the signature in the provider's scheme, then translate. Pure: no I/O."""
        ...

    async def aclose(self) -> None: ...
