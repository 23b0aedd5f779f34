"""Canonical value types of a checkout session, shared by every provider.

All are frozen pydantic models that forbid unknown fields. Times are aware UTC
datetimes, currencies upper-case ISO 4217, amounts integer minor units, metadata
within Stripe's limits (the strictest of our providers). A `client_secret` is never
part of these types: it is handed to the caller once and kept out of events.

A caller's input is held to stricter rules than data read back from the stream or
built from a provider's answer: validated with the `INPUT` context (as
`orchestrator.jetstream.wire` does for every command, over NATS and HTTP alike), text
refuses control characters (NUL, which Postgres cannot store, and the rest of C0/C1,
DEL, lone surrogates), an email must be an address (``email-validator``), and a country
must be assigned in ISO 3166-1 (``iso3166``), and text stays within `TEXT_MAX` /
`ID_MAX`. Without that context the same types read stored events and provider answers as
before. The one rule for every reader: an amount fits a signed 64-bit integer
(`events.money.INT64_MAX`), since no read model could hold more.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from iso3166 import countries_by_alpha2
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from events.money import CurrencyCode, MinorUnits, PositiveMinorUnits

__all__ = [
    "EMAIL_MAX",
    "INPUT",
    "METADATA_KEY_MAX",
    "METADATA_MAX_KEYS",
    "METADATA_VALUE_MAX",
    "TEXT_MAX",
    "AbsoluteUrl",
    "Address",
    "Amounts",
    "CountryCode",
    "Customer",
    "EmailAddress",
    "Identifier",
    "LineItem",
    "Metadata",
    "Mode",
    "PaymentStatus",
    "Printable",
    "Provider",
    "ProviderReferences",
    "RequestedAmount",
    "SessionStatus",
    "SessionUrls",
    "Text",
    "UtcDatetime",
    "Value",
]

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
TEXT_MAX = 5000
"""Longest free text (names, address lines): Stripe's limit for most strings."""
ID_MAX = 255
"""Longest identifier or code (provider ids, phone, postal code, tax id)."""
EMAIL_MAX = 254
"""Longest email address (RFC 5321 path limit; the ``customer_email`` index holds it)."""

INPUT: Final[Mapping[str, Any]] = {"checkout.input": True}
"""Validation context of a caller's input: the strict rules of this module apply."""

# C0 and C1 controls, DEL, and lone surrogates (not encodable as UTF-8)
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PRINTABLE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def _is_input(info: ValidationInfo) -> bool:
    context = info.context
    return isinstance(context, Mapping) and bool(context.get("checkout.input"))


def _printable(value: str, info: ValidationInfo) -> str:
    if _is_input(info) and (found := _FORBIDDEN.search(value)):
        code = f"U+{ord(found.group()):04X}"
        raise ValueError(f"control character {code} at position {found.start()} is not allowed")
    return value


def _at_most(limit: int) -> AfterValidator:
    def check(value: str, info: ValidationInfo) -> str:
        if _is_input(info) and len(value) > limit:
            raise ValueError(f"at most {limit} characters, got {len(value)}")
        return value

    return AfterValidator(check)


Printable = Annotated[
    str, Field(json_schema_extra={"pattern": _PRINTABLE_PATTERN}), AfterValidator(_printable)
]
"""Text without control characters in input (a field gives its own length)."""

Text = Annotated[
    str,
    Field(json_schema_extra={"maxLength": TEXT_MAX, "pattern": _PRINTABLE_PATTERN}),
    AfterValidator(_printable),
    _at_most(TEXT_MAX),
]
"""Free text: in input at most `TEXT_MAX` characters and no control characters."""

Identifier = Annotated[
    str,
    Field(json_schema_extra={"maxLength": ID_MAX, "pattern": _PRINTABLE_PATTERN}),
    AfterValidator(_printable),
    _at_most(ID_MAX),
]
"""An id or code: in input at most `ID_MAX` characters and no control characters.

The lengths bind input only, like the other input rules: a stored event or a
provider's answer is read as it is."""


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


def _absolute_url(value: str, info: ValidationInfo) -> str:
    _printable(value, info)
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"URL must be absolute (http or https with a host): {value!r}")
    if any(ch.isspace() for ch in value):
        raise ValueError("URL must not contain white space")
    return value


AbsoluteUrl = Annotated[str, Field(max_length=2048), AfterValidator(_absolute_url)]
"""An absolute http(s) URL. Stripe's ``{CHECKOUT_SESSION_ID}`` template is allowed."""


def _country(value: str, info: ValidationInfo) -> str:
    if len(value) != 2 or not value.isascii() or not value.isalpha():
        raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {value!r}")
    code = value.upper()
    if _is_input(info) and code not in countries_by_alpha2:
        raise ValueError(f"country {code!r} is not assigned in ISO 3166-1")
    return code


CountryCode = Annotated[
    str,
    Field(json_schema_extra={"pattern": "^[A-Za-z]{2}$", "minLength": 2, "maxLength": 2}),
    AfterValidator(_country),
]
"""An ISO 3166-1 alpha-2 code, upper-cased; input must name an assigned country."""


def _email(value: str, info: ValidationInfo) -> str:
    if _is_input(info):
        try:
            # syntax only (no DNS); ``test_environment`` admits the reserved .test domain
            validate_email(value, check_deliverability=False, test_environment=True)
        except EmailNotValidError as exc:
            raise ValueError(f"not a valid email address: {exc}") from None
    return value


EmailAddress = Annotated[
    str,
    Field(max_length=512, json_schema_extra={"format": "email", "maxLength": EMAIL_MAX}),
    AfterValidator(_email),
]
"""An email address; input is checked by ``email-validator`` (syntax, no DNS, at most
`EMAIL_MAX` characters); data read back keeps the older bound of 512."""


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata has {len(value)} keys; at most {METADATA_MAX_KEYS}")
    for key, item in value.items():
        if not key or len(key) > METADATA_KEY_MAX:
            raise ValueError(f"metadata key {key[:50]!r} must be 1..{METADATA_KEY_MAX} characters")
        if len(item) > METADATA_VALUE_MAX:
            raise ValueError(f"metadata value of {key!r} exceeds {METADATA_VALUE_MAX} characters")
    return value


_MetadataText = Annotated[str, AfterValidator(_printable)]
Metadata = Annotated[dict[_MetadataText, _MetadataText], AfterValidator(_metadata)]
"""String-to-string metadata within Stripe's limits: 50 keys, 40-char keys, 500-char values."""


class Address(Value):
    line1: Text | None = None
    line2: Text | None = None
    city: Text | None = None
    state: Text | None = None
    postal_code: Identifier | None = None
    country: CountryCode | None = None


class Customer(Value):
    """Who pays. Personal data: kept out of logs and span attributes, sealed in events
    (`events.privacy`); only ``country`` is ever stored in clear."""

    reference: Identifier | None = None
    """The merchant's own id for this customer: the data subject it is erased by."""
    provider_customer_id: Identifier | None = None
    email: EmailAddress | None = None
    name: Text | None = None
    phone: Identifier | None = None
    country: CountryCode | None = None
    address: Address | None = None
    tax_id: Identifier | None = None


class LineItem(Value):
    name: Annotated[Printable, Field(min_length=1, max_length=500)]
    quantity: int = Field(ge=1, le=1_000_000)
    unit_amount: MinorUnits = Field(ge=0)
    currency: CurrencyCode | None = None
    product_id: Identifier | None = None
    price_id: Identifier | None = None

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

    payment_intent: Identifier | None = None
    setup_intent: Identifier | None = None
    subscription: Identifier | None = None
    invoice: Identifier | None = None
    customer: Identifier | None = None


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
