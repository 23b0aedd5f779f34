"""Polar: pure request, response, status and webhook mapping. No I/O, no clock.

Owns the facts of PROVIDERS.md "Polar" that touch money or trust:

- Status: open | expired | confirmed | succeeded | failed map to canonical
  open | expired | processing | complete | failed. Anything else is pending
  (``open`` + ``unpaid``), never complete.
- Amounts of a *checkout*: canonical subtotal = ``amount`` (before discount and tax),
  discount = ``discount_amount``, tax = ``tax_amount`` (``null`` = not computed yet:
  ``None``), total = ``total_amount``. Never ``subtotal_amount``: on a checkout that is
  *after* discount (seed 002). On an *order* ``subtotal_amount`` is before discount
  (Polar's Order schema): `order_to_provider_session` reads it accordingly.
- No setup mode (`ProviderRejected` before any call); subscription when the price or
  product is recurring.
- Webhooks are Standard Webhooks with Polar's key quirk: the HMAC key is the UTF-8
  bytes of the *whole* ``whsec_...`` string, not its base64-decoded tail. Signatures
  must be within ±300 s of ``now`` (stale and future both rejected); comparison is
  constant-time. The event id is ``webhook-id``.
- ``client_secret`` becomes a `SecretStr` and is redacted from ``raw``.
- Our session id and the client reference travel in checkout metadata (Polar copies
  checkout metadata to the order).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr, ValidationError

from events.values import (
    Address,
    Amounts,
    Customer,
    LineItem,
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
    "ATTEMPT_KEY",
    "CLIENT_REFERENCE_KEY",
    "PROVIDER",
    "SESSION_ID_KEY",
    "WEBHOOK_TOLERANCE",
    "build_create_body",
    "checkout_to_provider_session",
    "map_status",
    "order_to_provider_session",
    "parse_webhook",
    "sign_webhook",
    "verify_signature",
    "verify_webhook",
]

PROVIDER = Provider.POLAR
SESSION_ID_KEY = "orchestrator_session_id"
CLIENT_REFERENCE_KEY = "orchestrator_client_reference_id"
ATTEMPT_KEY = "orchestrator_attempt_key"
_INTERNAL_KEYS = frozenset({SESSION_ID_KEY, CLIENT_REFERENCE_KEY, ATTEMPT_KEY})
WEBHOOK_TOLERANCE = timedelta(seconds=300)
_REDACTED = "[redacted]"

_STATUSES: dict[str, tuple[SessionStatus, PaymentStatus]] = {
    "open": (SessionStatus.OPEN, PaymentStatus.UNPAID),
    "expired": (SessionStatus.EXPIRED, PaymentStatus.UNPAID),
    "confirmed": (SessionStatus.PROCESSING, PaymentStatus.UNPAID),
    "succeeded": (SessionStatus.COMPLETE, PaymentStatus.PAID),
    "failed": (SessionStatus.FAILED, PaymentStatus.UNPAID),
}
_PENDING = (SessionStatus.OPEN, PaymentStatus.UNPAID)

# checkout.updated carries the new status; only these statuses mean something to us.
_UPDATED_KINDS: dict[str, WebhookKind] = {
    "confirmed": "processing",
    "succeeded": "completed",
    "failed": "payment_failed",
    "expired": "expired",
}


# --- requests -----------------------------------------------------------------------------------


def build_create_body(
    request: OpenRequest, *, payment_product_id: str, subscription_product_id: str | None
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/checkouts/`` (CheckoutProductsCreate).

    The amount goes as an ad-hoc fixed price on the configured product, in Polar's
    lower-case presentment currency.
    """
    product_id = _product_for(request, payment_product_id, subscription_product_id)
    total = request.amount.total
    if total is None:
        raise ProviderRejected(PROVIDER, "Polar needs an amount or priced line items")
    body: dict[str, Any] = {
        "products": [product_id],
        "prices": {product_id: [_fixed_price(total, request.amount.currency)]},
        "metadata": _request_metadata(request),
    }
    body.update(_customer_fields(request))
    body.update(_url_fields(request))
    return body


def _product_for(request: OpenRequest, payment: str, subscription: str | None) -> str:
    if request.mode is Mode.SETUP:
        raise ProviderRejected(PROVIDER, "Polar has no setup mode", mode=request.mode.value)
    if request.mode is Mode.PAYMENT:
        return payment
    if subscription is None:
        raise ProviderRejected(
            PROVIDER, "no recurring Polar product is configured", mode="subscription"
        )
    return subscription


def _fixed_price(amount: int, currency: str) -> dict[str, Any]:
    return {"amount_type": "fixed", "price_amount": amount, "price_currency": currency.lower()}


def _request_metadata(request: OpenRequest) -> dict[str, str]:
    metadata = {**request.metadata, SESSION_ID_KEY: request.session_id}
    metadata[ATTEMPT_KEY] = request.idempotency_key
    if request.client_reference_id is not None:
        metadata[CLIENT_REFERENCE_KEY] = request.client_reference_id
    return metadata


def _customer_fields(request: OpenRequest) -> dict[str, Any]:
    customer = request.customer
    fields: dict[str, Any] = {
        "customer_id": customer.provider_customer_id,
        "customer_email": customer.email,
        "customer_name": customer.name,
        "customer_tax_id": customer.tax_id,
    }
    address = customer.address
    if address is not None and address.country is not None:
        fields["customer_billing_address"] = address.model_dump(exclude_none=True)
    elif customer.country is not None:
        fields["customer_billing_address"] = {"country": customer.country}
    return {key: value for key, value in fields.items() if value is not None}


def _url_fields(request: OpenRequest) -> dict[str, Any]:
    urls = {"success_url": request.urls.success_url, "return_url": request.urls.return_url}
    return {key: value for key, value in urls.items() if value is not None}


# --- responses ----------------------------------------------------------------------------------


def map_status(status: object) -> tuple[SessionStatus, PaymentStatus]:
    """Polar checkout status -> canonical; anything unmapped is pending, never success."""
    if not isinstance(status, str):
        return _PENDING
    return _STATUSES.get(status, _PENDING)


def checkout_to_provider_session(
    checkout: Mapping[str, Any], *, livemode: bool = False
) -> ProviderSession:
    """A Polar ``Checkout`` object (0.x seed shape or the current API) -> canonical."""
    try:
        return _checkout_session(checkout, livemode=livemode)
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        raise ProviderUnavailable(PROVIDER, f"unreadable Polar checkout: {_reason(exc)}") from None


def _checkout_session(checkout: Mapping[str, Any], *, livemode: bool) -> ProviderSession:
    status, payment_status = map_status(checkout.get("status"))
    if payment_status is PaymentStatus.PAID and checkout.get("is_payment_required") is False:
        payment_status = PaymentStatus.NO_PAYMENT_REQUIRED
    metadata = string_metadata(checkout.get("metadata"))
    secret = checkout.get("client_secret")
    return ProviderSession(
        provider=PROVIDER,
        provider_session_id=str(checkout["id"]),
        session_id=metadata.get(SESSION_ID_KEY),
        status=status,
        payment_status=payment_status,
        mode=_checkout_mode(checkout),
        currency=upper_currency(checkout.get("currency")),
        amounts=_checkout_amounts(checkout),
        customer=_checkout_customer(checkout),
        line_items=_line_items(checkout),
        checkout_url=checkout.get("url"),
        urls=SessionUrls(
            success_url=checkout.get("success_url"), return_url=checkout.get("return_url")
        ),
        client_secret=SecretStr(secret) if isinstance(secret, str) else None,
        created_at=aware_datetime(checkout.get("created_at")),
        expires_at=aware_datetime(checkout.get("expires_at")),
        metadata=_merchant_metadata(metadata),
        client_reference_id=metadata.get(CLIENT_REFERENCE_KEY),
        livemode=livemode,
        references=ProviderReferences(subscription=checkout.get("subscription_id")),
        raw=_redacted(checkout),
    )


def _checkout_mode(checkout: Mapping[str, Any]) -> Mode:
    price = checkout.get("product_price")
    product = checkout.get("product")
    recurring_price = isinstance(price, Mapping) and (
        price.get("type") == "recurring" or price.get("recurring_interval") is not None
    )
    recurring_product = isinstance(product, Mapping) and product.get("is_recurring") is True
    return Mode.SUBSCRIPTION if recurring_price or recurring_product else Mode.PAYMENT


def _checkout_amounts(checkout: Mapping[str, Any]) -> Amounts | None:
    currency = upper_currency(checkout.get("currency"))
    if currency is None:
        return None
    return Amounts(
        currency=currency,
        subtotal=checkout.get("amount"),
        discount=_checkout_discount(checkout),
        tax=checkout.get("tax_amount"),
        total=checkout.get("total_amount"),
    )


def _checkout_discount(checkout: Mapping[str, Any]) -> int | None:
    if "discount_amount" in checkout:
        value = checkout["discount_amount"]
        return None if value is None else int(value)
    # The 0.x shape (seed 002) has no discount_amount: ``subtotal_amount`` is after discount.
    gross, net = checkout.get("amount"), checkout.get("net_amount", checkout.get("subtotal_amount"))
    if isinstance(gross, int) and isinstance(net, int):
        return gross - net
    return None


def _checkout_customer(checkout: Mapping[str, Any]) -> Customer:
    address = _address(checkout.get("customer_billing_address"))
    return Customer(
        provider_customer_id=checkout.get("customer_id"),
        email=checkout.get("customer_email"),
        name=checkout.get("customer_name") or checkout.get("customer_billing_name"),
        country=address.country if address is not None else None,
        address=address,
        tax_id=checkout.get("customer_tax_id"),
    )


def _address(value: object) -> Address | None:
    if not isinstance(value, Mapping):
        return None
    keys = ("line1", "line2", "city", "state", "postal_code", "country")
    return Address(**{key: value.get(key) for key in keys})


def _line_items(checkout: Mapping[str, Any]) -> tuple[LineItem, ...]:
    product, amount = checkout.get("product"), checkout.get("amount")
    if not isinstance(product, Mapping) or not isinstance(amount, int) or not product.get("name"):
        return ()
    item = LineItem(
        name=str(product["name"]),
        quantity=1,
        unit_amount=amount,
        currency=upper_currency(checkout.get("currency")),
        product_id=checkout.get("product_id"),
        price_id=checkout.get("product_price_id"),
    )
    return (item,)


def order_to_provider_session(
    order: Mapping[str, Any], *, livemode: bool = False
) -> ProviderSession:
    """A paid Polar ``Order`` seen as its checkout: complete and paid.

    Requires ``checkout_id``. On an order ``subtotal_amount`` is *before* discount,
    unlike on a checkout.
    """
    try:
        return _order_session(order, livemode=livemode)
    except (ValidationError, ValueError, TypeError, KeyError) as exc:
        raise ProviderUnavailable(PROVIDER, f"unreadable Polar order: {_reason(exc)}") from None


def _order_session(order: Mapping[str, Any], *, livemode: bool) -> ProviderSession:
    metadata = string_metadata(order.get("metadata"))
    currency = upper_currency(order.get("currency"))
    amounts = None
    if currency is not None:
        amounts = Amounts(
            currency=currency,
            subtotal=order.get("subtotal_amount"),
            discount=order.get("discount_amount"),
            tax=order.get("tax_amount"),
            total=order.get("total_amount"),
        )
    paid = order.get("paid") is True or order.get("status") == "paid"
    return ProviderSession(
        provider=PROVIDER,
        provider_session_id=str(order["checkout_id"]),
        session_id=metadata.get(SESSION_ID_KEY),
        status=SessionStatus.COMPLETE if paid else SessionStatus.PROCESSING,
        payment_status=PaymentStatus.PAID if paid else PaymentStatus.UNPAID,
        mode=Mode.SUBSCRIPTION if order.get("subscription_id") else Mode.PAYMENT,
        currency=currency,
        amounts=amounts,
        customer=Customer(provider_customer_id=order.get("customer_id")),
        created_at=aware_datetime(order.get("created_at")),
        metadata=_merchant_metadata(metadata),
        client_reference_id=metadata.get(CLIENT_REFERENCE_KEY),
        livemode=livemode,
        references=ProviderReferences(subscription=order.get("subscription_id")),
        raw=dict(order),
    )


# --- small conversions --------------------------------------------------------------------------


def _merchant_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in metadata.items() if key not in _INTERNAL_KEYS}


def _redacted(payload: Mapping[str, Any]) -> dict[str, Any]:
    raw = dict(payload)
    if raw.get("client_secret") is not None:
        raw["client_secret"] = _REDACTED
    return raw


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return f"{type(exc).__name__}: {exc}"


# --- webhooks -----------------------------------------------------------------------------------


def _signing_key(secret: SecretStr) -> bytes:
    # Polar's quirk: the whole "whsec_..." string, UTF-8 encoded, is the key.
    return secret.get_secret_value().encode("utf-8")


def _signature(secret: SecretStr, msg_id: str, timestamp: str, body: bytes) -> bytes:
    signed = b".".join((msg_id.encode("utf-8"), timestamp.encode("ascii"), body))
    return hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()


def sign_webhook(secret: SecretStr, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers Polar would send for ``body`` (simulator, tests)."""
    digest = _signature(secret, msg_id, str(timestamp), body)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{base64.b64encode(digest).decode('ascii')}",
    }


def verify_signature(
    secret: SecretStr, headers: Mapping[str, str], body: bytes, now: datetime
) -> str:
    """Check the Standard Webhooks signature; return the ``webhook-id``.

    Raises `WebhookRejected` for missing headers, a timestamp outside ±300 s of
    ``now`` (stale or future), or no matching ``v1`` signature.
    """
    lowered = {key.lower(): value for key, value in headers.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise WebhookRejected(
            PROVIDER, "missing webhook-id, webhook-timestamp or webhook-signature"
        )
    _check_timestamp(stamp, now)
    expected = _signature(secret, msg_id, stamp, body)
    if not any(hmac.compare_digest(expected, given) for given in _v1_signatures(signatures)):
        raise WebhookRejected(PROVIDER, "no matching signature")
    return msg_id


def _check_timestamp(stamp: str, now: datetime) -> None:
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookRejected(PROVIDER, "webhook-timestamp is not a unix time")
    sent = datetime.fromtimestamp(int(stamp), tz=UTC)
    if sent < now - WEBHOOK_TOLERANCE:
        raise WebhookRejected(PROVIDER, "timestamp too old")
    if sent > now + WEBHOOK_TOLERANCE:
        raise WebhookRejected(PROVIDER, "timestamp in the future")


def _v1_signatures(header: str) -> list[bytes]:
    decoded = []
    for entry in header.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            decoded.append(base64.b64decode(value, validate=True))
        except ValueError:
            continue
    return decoded


def verify_webhook(
    secret: SecretStr,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime,
    *,
    livemode: bool = False,
) -> WebhookEvent:
    """Verify, then translate. Pure: the clock comes in as ``now``."""
    event_id = verify_signature(secret, headers, body, now)
    return parse_webhook(event_id, body, livemode=livemode)


def parse_webhook(event_id: str, body: bytes, *, livemode: bool = False) -> WebhookEvent:
    """Translate a *verified* Polar webhook body into a `WebhookEvent`."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected(PROVIDER, "body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        raise WebhookRejected(PROVIDER, "body has no event type")
    event_type: str = payload["type"]
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    kind, session = _translate(event_type, data, livemode=livemode)
    return WebhookEvent(
        provider=PROVIDER,
        event_id=event_id,
        kind=kind,
        provider_type=event_type,
        provider_session_id=session.provider_session_id if session is not None else None,
        session=session,
        occurred_at=_event_time(payload.get("timestamp")),
    )


def _translate(
    event_type: str, data: Mapping[str, Any], *, livemode: bool
) -> tuple[WebhookKind, ProviderSession | None]:
    try:
        if event_type.startswith("checkout.") and data.get("id") is not None:
            session = checkout_to_provider_session(data, livemode=livemode)
            return _checkout_kind(event_type, data), session
        if event_type == "order.paid" and data.get("checkout_id") is not None:
            return "completed", order_to_provider_session(data, livemode=livemode)
    except ProviderUnavailable as exc:
        raise WebhookRejected(PROVIDER, exc.message) from None
    # order.refunded, order.created, subscription.*, an order without a checkout: not ours.
    return "ignored", None


def _checkout_kind(event_type: str, data: Mapping[str, Any]) -> WebhookKind:
    if event_type == "checkout.expired":
        return "expired"
    if event_type == "checkout.updated":
        status = data.get("status")
        return _UPDATED_KINDS.get(status, "ignored") if isinstance(status, str) else "ignored"
    return "ignored"


def _event_time(value: object) -> datetime | None:
    try:
        return aware_datetime(value)
    except (TypeError, ValueError):
        return None
