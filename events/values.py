"""Canonical value types of a checkout session, shared by every provider.

All are frozen pydantic models that forbid unknown fields. Times are aware UTC
datetimes, currencies upper-case ISO 4217, amounts integer minor units, metadata
within Stripe's limits (the strictest of our providers). A `client_secret` is never
part of these types: it is handed to the caller once and kept out of events.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from events.money import CurrencyCode, MinorUnits, PositiveMinorUnits

__all__ = [
    "METADATA_KEY_MAX",
    "METADATA_MAX_KEYS",
    "METADATA_VALUE_MAX",
    "AbsoluteUrl",
    "Address",
    "Amounts",
    "CountryCode",
    "Customer",
    "LineItem",
    "Metadata",
    "Mode",
    "PaymentStatus",
    "Provider",
    "ProviderReferences",
    "RequestedAmount",
    "SessionStatus",
    "SessionUrls",
    "UtcDatetime",
    "Value",
]

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


class Value(BaseModel):
    """Base of every value type and event: immutable, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class Provider(StrEnum):
    STRIPE = "stripe"
    POLAR = "polar"
    LOMI = "lomi"
    KONG = "kong"


class Mode(StrEnum):
    PAYMENT = "payment"
    SETUP = "setup"
    SUBSCRIPTION = "subscription"


class SessionStatus(StrEnum):
    OPEN = "open"
    PROCESSING = "processing"
    COMPLETE = "complete"
    EXPIRED = "expired"
    FAILED = "failed"


class PaymentStatus(StrEnum):
    PAID = "paid"
    UNPAID = "unpaid"
    NO_PAYMENT_REQUIRED = "no_payment_required"


def _utc(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("datetime must carry a time zone")
    if value.tzinfo is UTC:
        return value
    # a zero offset only needs the UTC tzinfo: replace() is much cheaper than astimezone()
    return value.replace(tzinfo=UTC) if not offset else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
"""An aware datetime, normalised to UTC; a naive one is rejected."""


def _absolute_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"URL must be absolute (http or https with a host): {value!r}")
    if any(ch.isspace() for ch in value):
        raise ValueError("URL must not contain white space")
    return value


AbsoluteUrl = Annotated[str, Field(max_length=2048), AfterValidator(_absolute_url)]
"""An absolute http(s) URL. Stripe's ``{CHECKOUT_SESSION_ID}`` template is allowed."""


def _country(value: str) -> str:
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {value!r}")
    return value.upper()


CountryCode = Annotated[str, AfterValidator(_country)]


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata has {len(value)} keys; at most {METADATA_MAX_KEYS}")
    for key, item in value.items():
        if not key or len(key) > METADATA_KEY_MAX:
            raise ValueError(f"metadata key {key[:50]!r} must be 1..{METADATA_KEY_MAX} characters")
        if len(item) > METADATA_VALUE_MAX:
            raise ValueError(f"metadata value of {key!r} exceeds {METADATA_VALUE_MAX} characters")
    return value


Metadata = Annotated[dict[str, str], AfterValidator(_metadata)]
"""String-to-string metadata within Stripe's limits: 50 keys, 40-char keys, 500-char values."""


class Address(Value):
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: CountryCode | None = None


class Customer(Value):
    """Who pays. Personal data: kept out of logs and span attributes."""

    provider_customer_id: str | None = None
    email: str | None = Field(default=None, max_length=512)
    name: str | None = None
    phone: str | None = None
    country: CountryCode | None = None
    address: Address | None = None
    tax_id: str | None = None


class LineItem(Value):
    name: str = Field(min_length=1, max_length=500)
    quantity: int = Field(ge=1, le=1_000_000)
    unit_amount: MinorUnits = Field(ge=0)
    currency: CurrencyCode | None = None
    product_id: str | None = None
    price_id: str | None = None

    @property
    def total(self) -> int:
        return self.unit_amount * self.quantity


class Amounts(Value):
    """Amounts in minor units; ``None`` where the provider computed none."""

    currency: CurrencyCode
    subtotal: MinorUnits | None = None
    discount: MinorUnits | None = None
    tax: MinorUnits | None = None
    shipping: MinorUnits | None = None
    total: MinorUnits | None = None


class SessionUrls(Value):
    success_url: AbsoluteUrl | None = None
    cancel_url: AbsoluteUrl | None = None
    return_url: AbsoluteUrl | None = None


class ProviderReferences(Value):
    """Identifiers the provider gave to things around the session."""

    payment_intent: str | None = None
    setup_intent: str | None = None
    subscription: str | None = None
    invoice: str | None = None
    customer: str | None = None


class RequestedAmount(Value):
    """What the merchant asks to charge: a total, or line items that sum to it."""

    currency: CurrencyCode
    amount: PositiveMinorUnits | None = None
    line_items: tuple[LineItem, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> RequestedAmount:
        for item in self.line_items:
            if item.currency is not None and item.currency != self.currency:
                msg = f"line item {item.name!r} is in {item.currency}, not {self.currency}"
                raise ValueError(msg)
        if self.line_items and self.amount is not None and self.amount != self.items_total:
            raise ValueError(
                f"amount {self.amount} differs from the line items' total {self.items_total}"
            )
        return self

    @property
    def items_total(self) -> int:
        return sum(item.total for item in self.line_items)

    @property
    def total(self) -> int | None:
        return self.amount if self.amount is not None else (self.items_total or None)
