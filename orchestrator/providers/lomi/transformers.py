"""lomi.: pure request, response, status and webhook mapping. No I/O, no clock.

Owns the facts of PROVIDERS.md "lomi." that touch money or trust:

- Create takes only XOF, USD and EUR, ``amount`` (or line items), and
  ``customer_email`` or ``customer_id``; anything else is `ProviderRejected` before a
  call. Payment mode only. lomi's create schema (its DTO, kamayakoi/lomi. commit
  0add339a) has neither ``expires_at`` nor ``allowed_providers``: lomi applies its own
  60-minute expiry, so we send neither; the orchestrator enforces an earlier
  ``expires_at`` of ours itself (the settlement sweeper closes the session).
- Status open | completed | expired ("completed", not Stripe's "complete") map to
  canonical open | complete | expired; anything else is pending (open + unpaid).
- ``amount`` is a float on the wire in the currency's smallest unit (XOF has none
  below the franc: ``10000.0`` is 10 000 F CFA). It becomes an ``int``; a non-integral,
  negative or non-finite value is refused (`ProviderRejected`), never rounded.
- Webhooks: ``X-Lomi-Signature = hex(HMAC-SHA256(secret, raw_body))``, compared in
  constant time. No timestamp is signed, so there is no replay window: the ingress
  dedupes on `WebhookEvent.event_id` (the body's ``id``).
- PAYMENT_SUCCEEDED and the older CHECKOUT_COMPLETED mean ``completed``;
  PAYMENT_FAILED means ``payment_failed``; any other event is ``ignored``.
- PAYMENT_SUCCEEDED / PAYMENT_FAILED carry lomi's *transaction row* (its
  ``get_transaction`` shape: ``transaction_id``, ``gross_amount``, ``net_amount``,
  ``fee_amount``, ``currency_code``, ``status``, ``metadata``, ...; read from lomi's
  webhook sender, kamayakoi/lomi. ``apps/api/src/webhooks``, commit 0add339a), which
  names no checkout session. The event then has ``provider_session_id=None`` and no
  session, ``amounts`` from ``gross_amount`` (what the customer paid; ``net_amount`` is
  after lomi's fee) and ``session_id`` from our id if the transaction's metadata echoes
  it. `needs_poll` is true when neither names a session: never guess which session was
  paid; reconciliation retrieves the open lomi sessions and settles them from lomi's
  own status. A ``checkout_session_id`` in the data (CHECKOUT_COMPLETED's session, or a
  nested ``checkout_session``) is used first.
- Our session id and client reference travel in the session's metadata.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import SecretStr, ValidationError

from events.values import (
    Amounts,
    Customer,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    SessionStatus,
    SessionUrls,
)
from orchestrator.providers.base import (
    OpenRequest,
    ProviderRejected,
    ProviderSession,
    ProviderUnavailable,
    WebhookEvent,
    WebhookKind,
    WebhookRejected,
)
from orchestrator.providers.conversions import aware_datetime, string_metadata, upper_currency

__all__ = [
    "CLIENT_REFERENCE_KEY",
    "DEFAULT_EXPIRY",
    "PROVIDER",
    "SESSION_ID_KEY",
    "SIGNATURE_HEADER",
    "SUPPORTED_CURRENCIES",
    "build_create_body",
    "map_status",
    "needs_poll",
    "parse_webhook",
    "sign_webhook",
    "to_minor_units",
    "to_provider_session",
    "verify_signature",
    "verify_webhook",
]

PROVIDER = Provider.LOMI
SESSION_ID_KEY = "orchestrator_session_id"
CLIENT_REFERENCE_KEY = "orchestrator_client_reference_id"
_INTERNAL_KEYS = frozenset({SESSION_ID_KEY, CLIENT_REFERENCE_KEY})
SUPPORTED_CURRENCIES = frozenset({"XOF", "USD", "EUR"})
DEFAULT_EXPIRY = timedelta(minutes=60)
SIGNATURE_HEADER = "X-Lomi-Signature"
EVENT_HEADER = "X-Lomi-Event"

_STATUSES: dict[str, tuple[SessionStatus, PaymentStatus]] = {
    "open": (SessionStatus.OPEN, PaymentStatus.UNPAID),
    "completed": (SessionStatus.COMPLETE, PaymentStatus.PAID),
    "expired": (SessionStatus.EXPIRED, PaymentStatus.UNPAID),
}
_PENDING = (SessionStatus.OPEN, PaymentStatus.UNPAID)

_EVENT_KINDS: dict[str, WebhookKind] = {
    "PAYMENT_SUCCEEDED": "completed",
    "CHECKOUT_COMPLETED": "completed",
    "PAYMENT_FAILED": "payment_failed",
}


# --- amounts ------------------------------------------------------------------------------------


def to_minor_units(value: object, *, field: str = "amount") -> int:
    """lomi's float-on-the-wire amount (smallest unit) -> an exact ``int``.

    ``10000.0`` -> ``10000``; ``10000.5``, ``-1``, ``NaN``, ``True`` or a string are
    refused with `ProviderRejected`: money is never rounded here.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderRejected(PROVIDER, f"lomi {field} is not a number", field=field)
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        raise ProviderRejected(
            PROVIDER, f"lomi {field} {value!r} is not a whole number of minor units", field=field
        )
    amount = int(Decimal(value))
    if amount < 0:
        raise ProviderRejected(PROVIDER, f"lomi {field} {amount} is negative", field=field)
    return amount


# --- requests -----------------------------------------------------------------------------------


def build_create_body(request: OpenRequest) -> dict[str, Any]:
    """The JSON body of ``POST /checkout-sessions``; refuses what lomi would refuse."""
    currency = request.amount.currency
    if currency not in SUPPORTED_CURRENCIES:
        raise ProviderRejected(
            PROVIDER, f"lomi takes XOF, USD or EUR, not {currency}", currency=currency
        )
    if request.mode is not Mode.PAYMENT:
        raise ProviderRejected(
            PROVIDER, "lomi opens payment sessions only", mode=request.mode.value
        )
    customer = request.customer
    if customer.email is None and customer.provider_customer_id is None:
        raise ProviderRejected(PROVIDER, "lomi needs the customer's email or lomi customer id")
    total = request.amount.total
    if total is None:
        raise ProviderRejected(PROVIDER, "lomi needs an amount or priced line items")
    body: dict[str, Any] = {
        "currency_code": currency,
        "amount": total,
        "metadata": _request_metadata(request),
        "title": _title(request),
        "customer_email": customer.email,
        "customer_id": customer.provider_customer_id,
        "customer_name": customer.name,
        "customer_phone": customer.phone,
        "success_url": request.urls.success_url,
        "cancel_url": request.urls.cancel_url,
    }
    return {key: value for key, value in body.items() if value is not None}


def _request_metadata(request: OpenRequest) -> dict[str, str]:
    metadata = {**request.metadata, SESSION_ID_KEY: request.session_id}
    if request.client_reference_id is not None:
        metadata[CLIENT_REFERENCE_KEY] = request.client_reference_id
    return metadata


def _title(request: OpenRequest) -> str | None:
    items = request.amount.line_items
    if not items:
        return None
    names = ", ".join(f"{item.quantity} x {item.name}" for item in items)
    return names[:200]


# --- responses ----------------------------------------------------------------------------------


def map_status(status: object) -> tuple[SessionStatus, PaymentStatus]:
    """lomi status -> canonical; anything unmapped is pending, never success."""
    if not isinstance(status, str):
        return _PENDING
    return _STATUSES.get(status, _PENDING)


def to_provider_session(payload: Mapping[str, Any]) -> ProviderSession:
    """A lomi ``CheckoutSessions`` object (seed 004 + ``checkout_url``) -> canonical.

    Raises `ProviderRejected` for a non-integral amount, `ProviderUnavailable` for
    a payload that is not a checkout session at all.
    """
    try:
        return _session(payload)
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        raise ProviderUnavailable(PROVIDER, f"unreadable lomi session: {_reason(exc)}") from None


def _session(payload: Mapping[str, Any]) -> ProviderSession:
    status, payment_status = map_status(payload.get("status"))
    metadata = string_metadata(payload.get("metadata"))
    currency = upper_currency(payload.get("currency_code"))
    raw_amount = payload.get("amount")
    amount = None if raw_amount is None else to_minor_units(raw_amount)
    amounts = None
    if currency is not None:
        amounts = Amounts(currency=currency, subtotal=amount, total=amount)
    return ProviderSession(
        provider=PROVIDER,
        provider_session_id=str(payload["checkout_session_id"]),
        session_id=metadata.get(SESSION_ID_KEY),
        status=status,
        payment_status=payment_status,
        mode=Mode.SUBSCRIPTION if payload.get("subscription_id") else Mode.PAYMENT,
        currency=currency,
        amounts=amounts,
        customer=Customer(
            provider_customer_id=payload.get("customer_id"),
            email=payload.get("customer_email"),
            name=payload.get("customer_name"),
            phone=payload.get("customer_phone"),
        ),
        checkout_url=payload.get("checkout_url"),
        urls=SessionUrls(
            success_url=payload.get("success_url"), cancel_url=payload.get("cancel_url")
        ),
        created_at=aware_datetime(payload.get("created_at")),
        expires_at=aware_datetime(payload.get("expires_at")),
        metadata={k: v for k, v in metadata.items() if k not in _INTERNAL_KEYS},
        client_reference_id=metadata.get(CLIENT_REFERENCE_KEY),
        livemode=payload.get("environment") == "live",
        references=ProviderReferences(subscription=payload.get("subscription_id")),
        raw=dict(payload),
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return f"{type(exc).__name__}: {exc}"


# --- webhooks -----------------------------------------------------------------------------------


def sign_webhook(secret: SecretStr, body: bytes) -> str:
    """The ``X-Lomi-Signature`` value lomi would send for ``body`` (simulator, tests)."""
    return hmac.new(secret.get_secret_value().encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(secret: SecretStr, headers: Mapping[str, str], body: bytes) -> None:
    """Raise `WebhookRejected` unless ``X-Lomi-Signature`` signs exactly ``body``."""
    lowered = {key.lower(): value for key, value in headers.items()}
    given = lowered.get(SIGNATURE_HEADER.lower(), "").strip().lower()
    if not given:
        raise WebhookRejected(PROVIDER, f"missing {SIGNATURE_HEADER}")
    expected = sign_webhook(secret, body).encode("ascii")
    if not hmac.compare_digest(expected, given.encode("utf-8")):
        raise WebhookRejected(PROVIDER, "signature does not match")


def verify_webhook(
    secret: SecretStr,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,  # noqa: ARG001 - lomi signs no timestamp: nothing to compare ``now`` with
) -> WebhookEvent:
    """Verify, then translate. Replays are the ingress's to drop, by ``event_id``."""
    verify_signature(secret, headers, body)
    return parse_webhook(headers, body)


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookEvent:
    """Translate a *verified* lomi webhook ``{id, event, timestamp, data, ...}``."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected(PROVIDER, "body is not JSON") from None
    if not isinstance(payload, dict) or not payload.get("id"):
        raise WebhookRejected(PROVIDER, "body has no event id")
    event_type = _event_type(headers, payload)
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    kind = _EVENT_KINDS.get(event_type, "ignored")
    session = _webhook_session(data) if kind != "ignored" else None
    is_payment = kind != "ignored" and session is None and "transaction_id" in data
    return WebhookEvent(
        provider=PROVIDER,
        event_id=str(payload["id"]),
        kind=kind,
        provider_type=event_type,
        provider_session_id=_checkout_session_id(data) if kind != "ignored" else None,
        session=session,
        occurred_at=_event_time(payload.get("timestamp")),
        session_id=string_metadata(data.get("metadata")).get(SESSION_ID_KEY)
        if is_payment
        else None,
        amounts=_paid_amounts(data) if is_payment else None,
    )


def needs_poll(event: WebhookEvent) -> bool:
    """True when a meaningful lomi event names no session at all: poll, don't guess."""
    return (
        event.kind != "ignored" and event.provider_session_id is None and event.session_id is None
    )


def _paid_amounts(transaction: Mapping[str, Any]) -> Amounts | None:
    """What a transaction row says the customer paid: ``gross_amount`` (before lomi's fee)."""
    currency = upper_currency(transaction.get("currency_code"))
    gross = transaction.get("gross_amount")
    if currency is None or gross is None:
        return None
    try:
        paid = to_minor_units(gross, field="gross_amount")
    except ProviderRejected as exc:
        raise WebhookRejected(PROVIDER, exc.message) from None
    return Amounts(currency=currency, subtotal=paid, total=paid)


def _event_type(headers: Mapping[str, str], payload: Mapping[str, Any]) -> str:
    # The body is signed, the X-Lomi-Event header is not: the body wins.
    in_body = payload.get("event")
    if isinstance(in_body, str) and in_body:
        return in_body.upper()
    lowered = {key.lower(): value for key, value in headers.items()}
    in_header = lowered.get(EVENT_HEADER.lower(), "")
    if not in_header:
        raise WebhookRejected(PROVIDER, "no event type")
    return in_header.upper()


def _checkout_session_id(data: Mapping[str, Any]) -> str | None:
    direct = data.get("checkout_session_id")
    if isinstance(direct, str) and direct:
        return direct
    nested = data.get("checkout_session")
    if isinstance(nested, Mapping):
        inner = nested.get("checkout_session_id") or nested.get("id")
        return inner if isinstance(inner, str) and inner else None
    return None


def _webhook_session(data: Mapping[str, Any]) -> ProviderSession | None:
    """The session when the data *is* one (or embeds one); else the caller retrieves it."""
    candidate = data.get("checkout_session")
    if not isinstance(candidate, Mapping):
        candidate = data
    if not candidate.get("checkout_session_id") or "status" not in candidate:
        return None
    try:
        return to_provider_session(candidate)
    except (ProviderRejected, ProviderUnavailable) as exc:
        raise WebhookRejected(PROVIDER, exc.message) from None


def _event_time(value: object) -> datetime | None:
    try:
        return aware_datetime(value)
    except (TypeError, ValueError):
        return None
