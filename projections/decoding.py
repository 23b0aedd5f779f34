"""Stored events as the projector reads them: decoded by msgspec, folded as plain data.

The catalog (`events.catalog`) is the one schema: every event is validated by it when it
is appended, and its JSON is what the stream holds. Reading that JSON back into pydantic
models costs more than everything else the projector does per event (nested models,
validators, allocations), so the read side decodes it with msgspec into the structs
below instead: the same field names and types, each checked (a payload with a field of
the wrong type or shape, a missing or an unknown one does not decode, and the projector
parks it), every nested value the read models keep as JSON left as plain data. The input
rules of the catalog (lengths, control characters, absolute URLs) are not checked again:
they bound what callers may send, and the store only holds what passed them.
`tests/unit/test_decoding.py` holds the structs to the catalog: same fields, and the
same values for every stored sample and for generated events.

An event of an older schema version is upcast and validated by the catalog (the slow
path, for events written before a schema change), then decoded like the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from pydantic import ValidationError

from events.codec import Headers
from events.errors import DecodeError
from events.upcasting import UnknownEventError, current_version, upcast
from events.values import Mode, PaymentStatus, Provider

__all__ = [
    "Amounts",
    "AsyncPaymentFailed",
    "AsyncPaymentSucceeded",
    "CheckoutCanceled",
    "CheckoutCompleted",
    "CheckoutExpired",
    "CheckoutRequested",
    "CheckoutRouted",
    "CustomerForgotten",
    "Envelope",
    "LineItem",
    "PaymentProcessing",
    "ProviderCallFailed",
    "ProviderSessionOpened",
    "RequestedAmount",
    "StoredEvent",
    "decode_payload",
    "decode_stored",
    "without_none",
]

JsonObject = dict[str, Any]


def without_none(value: Any) -> Any:
    """``value`` without the ``None`` members of its objects (the read models' JSON)."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


class _Value(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    """A nested value: `msgspec.to_builtins` gives its JSON without the unset fields."""


class LineItem(_Value, frozen=True):
    name: str
    quantity: int
    unit_amount: int
    currency: str | None = None
    product_id: str | None = None
    price_id: str | None = None

    @property
    def total(self) -> int:
        return self.unit_amount * self.quantity


class RequestedAmount(_Value, frozen=True):
    currency: str
    amount: int | None = None
    line_items: tuple[LineItem, ...] = ()

    @property
    def total(self) -> int | None:
        if self.amount is not None:
            return self.amount
        return sum(item.total for item in self.line_items) or None


class Amounts(_Value, frozen=True):
    currency: str
    subtotal: int | None = None
    discount: int | None = None
    tax: int | None = None
    shipping: int | None = None
    total: int | None = None


class DroppedCandidate(_Value, frozen=True):
    provider: Provider
    reason: str


class RoutingExplanation(_Value, frozen=True):
    rules_version: str
    matched_rule: str | None
    candidates: tuple[Provider, ...]
    dropped: tuple[DroppedCandidate, ...] = ()


class _Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=True):
    session_id: str
    occurred_at: datetime
    schema_version: int

    @property
    def type(self) -> str:
        return str(self.__struct_config__.tag)


class CheckoutRequested(_Event, frozen=True, tag="requested"):
    mode: Mode
    amount: RequestedAmount
    subject: str | None = None
    customer: JsonObject = msgspec.field(default_factory=dict)
    urls: JsonObject = msgspec.field(default_factory=dict)
    ui_mode: str = "hosted"
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    client_reference_id: str | None = None
    expires_at: datetime | None = None


class CheckoutRouted(_Event, frozen=True, tag="routed"):
    provider: Provider
    attempt: int
    explanation: RoutingExplanation


class ProviderSessionOpened(_Event, frozen=True, tag="provider_session_opened"):
    provider: Provider
    attempt: int
    provider_session_id: str
    checkout_url: str | None = None
    expires_at: datetime | None = None
    livemode: bool = False
    has_client_secret: bool = False
    amounts: Amounts | None = None
    references: JsonObject = msgspec.field(default_factory=dict)


class ProviderCallFailed(_Event, frozen=True, tag="provider_call_failed"):
    provider: Provider
    attempt: int
    error_code: str
    message: str
    retryable: bool
    fallback: Provider | None = None


class PaymentProcessing(_Event, frozen=True, tag="processing"):
    provider_status: str | None = None


class CheckoutCompleted(_Event, frozen=True, tag="completed"):
    payment_status: PaymentStatus
    amounts: Amounts | None = None
    subject: str | None = None
    customer: JsonObject | None = None
    references: JsonObject = msgspec.field(default_factory=dict)


class AsyncPaymentSucceeded(_Event, frozen=True, tag="async_payment_succeeded"):
    pass


class AsyncPaymentFailed(_Event, frozen=True, tag="async_payment_failed"):
    reason: str | None = None


class CheckoutExpired(_Event, frozen=True, tag="expired"):
    reason: str = "provider"


class CheckoutCanceled(_Event, frozen=True, tag="canceled"):
    reason: str | None = None


class CustomerForgotten(_Event, frozen=True, tag="customer_forgotten"):
    subject: str
    sessions: tuple[str, ...] = ()
    metadata_keys: tuple[str, ...] = ()


StoredPayload = (
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
    | CustomerForgotten
)

_decoder = msgspec.json.Decoder(StoredPayload)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The headers of a stored event the read models keep."""

    event_id: str
    command_id: str
    correlation_id: str
    causation_id: str
    occurred_at: datetime
    traceparent: str | None = None

    @classmethod
    def of(cls, source: Any) -> Envelope:
        """The envelope of anything that carries these fields (`events.EventMetadata`, a
        timeline row)."""
        return cls(
            event_id=source.event_id,
            command_id=source.command_id,
            correlation_id=source.correlation_id,
            causation_id=source.causation_id,
            occurred_at=source.occurred_at,
            traceparent=source.traceparent,
        )


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One stored event: its payload decoded, its envelope, its place in the stream, and
    its JSON in the current schema version (what the timeline keeps)."""

    event: StoredPayload
    metadata: Envelope
    sequence: int
    subject: str
    payload: bytes

    @property
    def session_id(self) -> str:
        return self.event.session_id


def decode_payload(payload: bytes) -> StoredPayload:
    """A current-version payload; `DecodeError` when it is not one of the catalog's."""
    try:
        return _decoder.decode(payload)
    except msgspec.ValidationError as exc:  # JSON, but not an event of the catalog
        raise DecodeError(f"not a catalog event: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(f"Invalid JSON: {exc}") from exc


def _envelope(headers: Mapping[str, str]) -> Envelope:
    occurred_at = datetime.fromisoformat(headers[Headers.OCCURRED_AT])
    if occurred_at.tzinfo is None:
        raise ValueError("occurred-at header has no time zone")
    return Envelope(
        event_id=headers[Headers.EVENT_ID],
        command_id=headers[Headers.COMMAND_ID],
        correlation_id=headers[Headers.CORRELATION_ID],
        causation_id=headers[Headers.CAUSATION_ID],
        occurred_at=occurred_at,
        traceparent=headers.get(Headers.TRACEPARENT),
    )


def _current(event_type: str, version: int, payload: bytes) -> bytes:
    """The payload in the current schema version (older ones upcast, via the catalog)."""
    if version == current_version(event_type):
        return payload
    from events.catalog import event_adapter  # noqa: PLC0415 - the slow path only

    raw = msgspec.json.decode(payload)
    if not isinstance(raw, dict) or raw.get("type") != event_type:
        raise DecodeError(f"payload is not a {event_type!r} event object")
    return (
        event_adapter.validate_python(upcast(event_type, version, raw)).model_dump_json().encode()
    )


def _checked(event: StoredPayload, event_type: str, version: int) -> StoredPayload:
    """``event`` when it is what its headers say (after upcasting)."""
    if event.type != event_type or event.schema_version != current_version(event_type):
        raise DecodeError(
            f"payload is {event.type} v{event.schema_version}, headers say {event_type} v{version}"
        )
    return event


def decode_stored(
    subject: str, payload: bytes, headers: Mapping[str, str], sequence: int
) -> StoredEvent:
    """A stored message read back; `DecodeError` says why it cannot be (it is parked)."""
    try:
        event_type = headers[Headers.EVENT_TYPE]
        version = int(headers[Headers.SCHEMA_VERSION])
        current = _current(event_type, version, payload)
        event = _checked(decode_payload(current), event_type, version)
        envelope = _envelope(headers)
    except (KeyError, ValueError, ValidationError, UnknownEventError, DecodeError) as exc:
        raise DecodeError(f"message {sequence} on {subject}: {exc}") from exc
    return StoredEvent(event, envelope, sequence, subject, current)
