"""The contract: canonical value types, the session events, their wire codec.

Depends on nothing else of this project; `orchestrator` and `projections` depend on it.
"""

from events.catalog import (
    EVENT_TYPES,
    AsyncPaymentFailed,
    AsyncPaymentSucceeded,
    CheckoutCanceled,
    CheckoutCompleted,
    CheckoutEvent,
    CheckoutExpired,
    CheckoutRequested,
    CheckoutRouted,
    DroppedCandidate,
    PaymentProcessing,
    ProviderCallFailed,
    ProviderSessionOpened,
    RoutingExplanation,
    event_adapter,
)
from events.codec import DecodeError, EncodedEvent, Headers, decode, encode
from events.envelope import EventMetadata, RecordedEvent
from events.money import AmountError, CurrencyError, currency_exponent, to_minor_units
from events.values import (
    Address,
    Amounts,
    Customer,
    LineItem,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    RequestedAmount,
    SessionStatus,
    SessionUrls,
)

__all__ = [
    "EVENT_TYPES",
    "Address",
    "AmountError",
    "Amounts",
    "AsyncPaymentFailed",
    "AsyncPaymentSucceeded",
    "CheckoutCanceled",
    "CheckoutCompleted",
    "CheckoutEvent",
    "CheckoutExpired",
    "CheckoutRequested",
    "CheckoutRouted",
    "CurrencyError",
    "Customer",
    "DecodeError",
    "DroppedCandidate",
    "EncodedEvent",
    "EventMetadata",
    "Headers",
    "LineItem",
    "Mode",
    "PaymentProcessing",
    "PaymentStatus",
    "Provider",
    "ProviderCallFailed",
    "ProviderReferences",
    "ProviderSessionOpened",
    "RecordedEvent",
    "RequestedAmount",
    "RoutingExplanation",
    "SessionStatus",
    "SessionUrls",
    "currency_exponent",
    "decode",
    "encode",
    "event_adapter",
    "to_minor_units",
]
