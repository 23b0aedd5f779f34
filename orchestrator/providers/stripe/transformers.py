"""Stripe Checkout <-> the canonical model: pure request, response, status and webhook mapping.

No I/O and no clock. Owns Stripe's amount rules, which differ from ISO 4217 (our
canonical minor units) in two currencies and add divisibility rules in others:

- Zero-decimal at Stripe (amount = whole units): BIF CLP DJF GNF JPY KMF KRW MGA PYG
  RWF UGX VND VUV XAF XOF XPF. MGA has 2 ISO digits, so a canonical MGA amount must be a
  whole ariary (divisible by 100) and is divided by 100 on the way to Stripe.
- ISK: 0 ISO digits but two-decimal at Stripe, amounts divisible by 100: canonical
  ISK 5 is Stripe 500 (and Stripe 550 cannot be represented: rejected).
- Three-decimal BHD JOD KWD OMR TND: the last digit must be 0.
- A minimum charge per currency (payment mode), where Stripe documents one.

A request breaking a rule raises `ProviderRejected` before any call. Responses map
Stripe's ``open | complete | expired`` and ``paid | unpaid | no_payment_required``;
anything else is pending (``open`` / ``unpaid``), never complete or paid. Both API
shapes are read: old ``shipping_details`` / ``ui_mode: hosted`` and new
``collected_information.shipping_details`` / ``hosted_page``. The ``client_secret`` is
a `SecretStr` and is removed from the ``raw`` payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from stripe import StripeObject
from stripe.params.checkout import (
    SessionCreateParams,
    SessionCreateParamsLineItem,
    SessionCreateParamsLineItemPriceData,
)

from events.money import currency_exponent
from events.values import (
    METADATA_MAX_KEYS,
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
    Value,
)
from orchestrator.providers.base import (
    Capabilities,
    OpenRequest,
    ProviderError,
    ProviderRejected,
    ProviderSession,
    WebhookEvent,
    WebhookKind,
)

__all__ = [
    "ATTEMPT_METADATA_KEY",
    "CLIENT_REFERENCE_MAX",
    "SESSION_ID_METADATA_KEY",
    "STRIPE_CURRENCIES",
    "STRIPE_MINIMUM_CHARGE",
    "STRIPE_THREE_DECIMAL",
    "STRIPE_ZERO_DECIMAL",
    "Shipping",
    "capabilities",
    "check_client_reference",
    "create_params",
    "from_stripe_amount",
    "metadata_with",
    "session_from_stripe",
    "shipping_of",
    "statuses",
    "stripe_exponent",
    "to_stripe_amount",
    "webhook_event_from_stripe",
]

PROVIDER = Provider.STRIPE
SESSION_ID_METADATA_KEY = "orchestrator_session_id"
ATTEMPT_METADATA_KEY = "orchestrator_attempt"
RECURRING_INTERVAL_METADATA_KEY = "recurring_interval"

# ruff: noqa: SIM905 - currency lists read better as words than as 130 quoted strings
STRIPE_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
)
STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())

STRIPE_CURRENCIES = frozenset(
    """USD AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BRL BSD BWP
    BYN BZD CAD CDF CHF CLP CNY COP CRC CVE CZK DJF DKK DOP DZD EGP ETB EUR FJD FKP GBP GEL
    GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR ISK JMD JOD JPY KES KGS KHR KMF KRW KWD
    KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MUR MVR MWK MXN MYR MZN NAD NGN
    NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SEK SGD
    SHP SLE SOS SRD SZL THB TJS TND TOP TRY TTD TWD TZS UAH UGX UYU UZS VND VUV WST XAF XCD
    XCG XOF XPF YER ZAR ZMW""".split()
)
"""Stripe's presentment currencies that ISO 4217 (the ``iso4217`` package) still knows."""

STRIPE_MINIMUM_CHARGE: dict[str, int] = {
    "USD": 50, "AED": 200, "AUD": 50, "BRL": 50, "CAD": 50, "CHF": 50, "CZK": 1500,
    "DKK": 250, "EUR": 50, "GBP": 30, "HKD": 400, "HUF": 17500, "INR": 50, "JPY": 50,
    "MXN": 1000, "MYR": 200, "NOK": 300, "NZD": 50, "PLN": 200, "RON": 200, "SEK": 300,
    "SGD": 50, "THB": 1000,
}  # fmt: skip
"""Documented minimum charge, canonical minor units; others are checked by Stripe itself."""

_STATUS = {
    "open": SessionStatus.OPEN,
    "complete": SessionStatus.COMPLETE,
    "expired": SessionStatus.EXPIRED,
}
_PAYMENT_STATUS = {
    "paid": PaymentStatus.PAID,
    "unpaid": PaymentStatus.UNPAID,
    "no_payment_required": PaymentStatus.NO_PAYMENT_REQUIRED,
}
_MODES = {mode.value: mode for mode in Mode}
_WEBHOOK_KINDS: dict[str, WebhookKind] = {
    "checkout.session.completed": "completed",
    "checkout.session.async_payment_succeeded": "async_payment_succeeded",
    "checkout.session.async_payment_failed": "async_payment_failed",
    "checkout.session.expired": "expired",
}
_UI_MODE = {"hosted": "hosted_page", "embedded": "embedded_page"}


class Shipping(Value):
    """Where the goods go: Stripe's shipping details (old top-level or collected_information)."""

    name: str | None = None
    address: Address | None = None


def capabilities() -> Capabilities:
    return Capabilities(
        currencies=STRIPE_CURRENCIES,
        modes=frozenset(Mode),
        min_amount=dict(STRIPE_MINIMUM_CHARGE),
    )


# --- amounts ------------------------------------------------------------------------------


def stripe_exponent(currency: str) -> int:
    """Digits Stripe's API uses for ``currency`` (upper-case)."""
    if currency in STRIPE_ZERO_DECIMAL:
        return 0
    if currency in STRIPE_THREE_DECIMAL:
        return 3
    return 2


def to_stripe_amount(amount: int, currency: str) -> int:
    """Canonical minor units (ISO 4217) -> Stripe's amount; `ProviderRejected` if impossible."""
    if currency not in STRIPE_CURRENCIES:
        raise ProviderRejected(PROVIDER, f"Stripe does not take {currency}", currency=currency)
    shift = stripe_exponent(currency) - currency_exponent(currency)
    factor: int = 10 ** abs(shift)
    if shift < 0 and amount % factor:
        raise ProviderRejected(
            PROVIDER,
            f"{currency} {amount} has a fraction Stripe cannot charge (whole units only)",
            currency=currency,
            amount=amount,
        )
    stripe_amount = amount * factor if shift >= 0 else amount // factor
    if currency in STRIPE_THREE_DECIMAL and stripe_amount % 10:
        raise ProviderRejected(
            PROVIDER,
            f"{currency} amounts must end in 0 at Stripe, got {amount}",
            currency=currency,
            amount=amount,
        )
    return stripe_amount


def from_stripe_amount(amount: int | None, currency: str) -> int | None:
    """Stripe's amount -> canonical minor units (ISO 4217)."""
    if amount is None:
        return None
    shift = stripe_exponent(currency) - currency_exponent(currency)
    factor: int = 10 ** abs(shift)
    if shift <= 0:
        return amount * factor
    if amount % factor:
        raise ProviderError(
            PROVIDER,
            f"Stripe {currency} amount {amount} is finer than ISO 4217 allows",
            retryable=False,
        )
    return amount // factor


# --- requests -----------------------------------------------------------------------------

CLIENT_REFERENCE_MAX = 200


def metadata_with(
    request: OpenRequest, extra: dict[str, str], provider: Provider = PROVIDER
) -> dict[str, str]:
    """The merchant's metadata plus ours, within Stripe's 50 keys (`ProviderRejected`)."""
    merged = {**request.metadata, **extra}
    if len(merged) > METADATA_MAX_KEYS:
        raise ProviderRejected(
            provider,
            f"metadata has {len(merged)} keys with ours; Stripe takes {METADATA_MAX_KEYS}",
        )
    return merged


def check_client_reference(request: OpenRequest, provider: Provider = PROVIDER) -> None:
    reference = request.client_reference_id
    if reference is not None and len(reference) > CLIENT_REFERENCE_MAX:
        raise ProviderRejected(
            provider, f"client_reference_id exceeds Stripe's {CLIENT_REFERENCE_MAX} characters"
        )


def create_params(request: OpenRequest) -> SessionCreateParams:
    """The ``POST /v1/checkout/sessions`` parameters; `ProviderRejected` if Stripe would refuse."""
    currency = request.amount.currency
    to_stripe_amount(0, currency)  # rejects a currency Stripe does not take
    check_client_reference(request)
    ours = {SESSION_ID_METADATA_KEY: request.session_id, ATTEMPT_METADATA_KEY: str(request.attempt)}
    params: SessionCreateParams = {
        "mode": request.mode.value,
        "metadata": metadata_with(request, ours),
        "ui_mode": _UI_MODE[request.ui_mode],
    }
    if request.mode is Mode.SETUP:
        params["currency"] = currency.lower()
    else:
        params["line_items"] = _line_items(request)
    params.update(_urls(request))
    params.update(_customer(request))
    if request.client_reference_id is not None:
        params["client_reference_id"] = request.client_reference_id
    if request.expires_at is not None:
        params["expires_at"] = int(request.expires_at.timestamp())
    return params


def _line_items(request: OpenRequest) -> list[SessionCreateParamsLineItem]:
    amount = request.amount
    currency = amount.currency
    total = amount.total
    if total is None:
        raise ProviderRejected(PROVIDER, f"{request.mode.value} mode needs an amount or items")
    minimum = STRIPE_MINIMUM_CHARGE.get(currency)
    if request.mode is Mode.PAYMENT and minimum is not None and total < minimum:
        raise ProviderRejected(
            PROVIDER,
            f"Stripe's minimum charge in {currency} is {minimum}, got {total}",
            currency=currency,
            amount=total,
        )
    if not amount.line_items:
        name = f"Order {request.client_reference_id or request.session_id}"
        return [_line_item(request, name, 1, total, None)]
    return [
        _line_item(request, item.name, item.quantity, item.unit_amount, item.price_id)
        for item in amount.line_items
    ]


def _line_item(
    request: OpenRequest, name: str, quantity: int, unit_amount: int, price_id: str | None
) -> SessionCreateParamsLineItem:
    if price_id is not None:
        return {"price": price_id, "quantity": quantity}
    currency = request.amount.currency
    price_data: SessionCreateParamsLineItemPriceData = {
        "currency": currency.lower(),
        "unit_amount": to_stripe_amount(unit_amount, currency),
        "product_data": {"name": name},
    }
    if request.mode is Mode.SUBSCRIPTION:
        interval = request.metadata.get(RECURRING_INTERVAL_METADATA_KEY, "month")
        if interval not in {"day", "week", "month", "year"}:
            raise ProviderRejected(PROVIDER, f"unknown recurring interval {interval!r}")
        price_data["recurring"] = {"interval": interval}
    return {"price_data": price_data, "quantity": quantity}


def _urls(request: OpenRequest) -> SessionCreateParams:
    urls = request.urls
    if request.ui_mode == "embedded":
        if urls.return_url is None:
            raise ProviderRejected(PROVIDER, "an embedded Stripe checkout needs a return_url")
        return {"return_url": urls.return_url}
    params: SessionCreateParams = {}
    if urls.success_url is not None:
        params["success_url"] = urls.success_url
    if urls.cancel_url is not None:
        params["cancel_url"] = urls.cancel_url
    return params


def _customer(request: OpenRequest) -> SessionCreateParams:
    customer = request.customer
    if customer.provider_customer_id and customer.provider_customer_id.startswith("cus_"):
        return {"customer": customer.provider_customer_id}
    if customer.email:
        return {"customer_email": customer.email}
    return {}


# --- responses ----------------------------------------------------------------------------


def statuses(status: object, payment_status: object) -> tuple[SessionStatus, PaymentStatus]:
    """Stripe's pair -> ours. An unknown status is pending (open, unpaid), whatever it says."""
    mapped = _STATUS.get(str(status))
    if mapped is None:
        return SessionStatus.OPEN, PaymentStatus.UNPAID
    return mapped, _PAYMENT_STATUS.get(str(payment_status), PaymentStatus.UNPAID)


def session_from_stripe(session: Mapping[str, Any] | StripeObject) -> ProviderSession:
    """A Stripe ``checkout.session`` (dict or `StripeObject`, any API version) -> canonical."""
    data = _plain(session)
    currency = _upper(data.get("currency"))
    status, payment_status = statuses(data.get("status"), data.get("payment_status"))
    metadata = {str(k): str(v) for k, v in (data.get("metadata") or {}).items()}
    secret = data.get("client_secret")
    return ProviderSession(
        provider=PROVIDER,
        provider_session_id=str(data["id"]),
        session_id=metadata.get(SESSION_ID_METADATA_KEY),
        status=status,
        payment_status=payment_status,
        mode=_mode(data.get("mode")),
        currency=currency,
        amounts=_amounts(data, currency),
        customer=_customer_of(data),
        line_items=_items_of(data, currency),
        checkout_url=data.get("url") if status is SessionStatus.OPEN else None,
        urls=SessionUrls(
            success_url=data.get("success_url"),
            cancel_url=data.get("cancel_url"),
            return_url=data.get("return_url"),
        ),
        client_secret=secret,
        created_at=_time(data.get("created")),
        expires_at=_time(data.get("expires_at")),
        metadata=metadata,
        client_reference_id=data.get("client_reference_id"),
        livemode=bool(data.get("livemode", False)),
        references=ProviderReferences(
            payment_intent=_id(data.get("payment_intent")),
            setup_intent=_id(data.get("setup_intent")),
            subscription=_id(data.get("subscription")),
            invoice=_id(data.get("invoice")),
            customer=_id(data.get("customer")),
        ),
        raw={k: v for k, v in data.items() if k != "client_secret"},
    )


def shipping_of(session: Mapping[str, Any] | StripeObject) -> Shipping | None:
    """Shipping details from ``collected_information`` (new) or the top level (old API)."""
    data = _plain(session)
    collected = (data.get("collected_information") or {}).get("shipping_details")
    details = collected or data.get("shipping_details")
    if not details:
        return None
    return Shipping(name=details.get("name"), address=_address(details.get("address")))


def _plain(session: Mapping[str, Any] | StripeObject) -> dict[str, Any]:
    if isinstance(session, StripeObject):
        return session.to_dict()
    return dict(session)


def _mode(value: object) -> Mode:
    mode = _MODES.get(str(value))
    if mode is None:
        raise ProviderError(PROVIDER, f"unknown Stripe checkout mode {value!r}", retryable=False)
    return mode


def _amounts(data: Mapping[str, Any], currency: str | None) -> Amounts | None:
    if currency is None or (
        data.get("amount_subtotal") is None and data.get("amount_total") is None
    ):
        return None
    totals = data.get("total_details") or {}
    return Amounts(
        currency=currency,
        subtotal=from_stripe_amount(data.get("amount_subtotal"), currency),
        discount=from_stripe_amount(totals.get("amount_discount"), currency),
        tax=from_stripe_amount(totals.get("amount_tax"), currency),
        shipping=from_stripe_amount(totals.get("amount_shipping"), currency),
        total=from_stripe_amount(data.get("amount_total"), currency),
    )


def _customer_of(data: Mapping[str, Any]) -> Customer:
    details = data.get("customer_details") or {}
    address = _address(details.get("address"))
    tax_ids = details.get("tax_ids") or []
    return Customer(
        provider_customer_id=_id(data.get("customer")),
        email=details.get("email") or data.get("customer_email"),
        name=details.get("name"),
        phone=details.get("phone"),
        country=address.country if address else None,
        address=address,
        tax_id=tax_ids[0].get("value") if tax_ids else None,
    )


def _address(value: Mapping[str, Any] | None) -> Address | None:
    if not value or not any(value.values()):
        return None
    return Address(
        line1=value.get("line1"),
        line2=value.get("line2"),
        city=value.get("city"),
        state=value.get("state"),
        postal_code=value.get("postal_code"),
        country=value.get("country") or None,
    )


def _items_of(data: Mapping[str, Any], currency: str | None) -> tuple[LineItem, ...]:
    listing = data.get("line_items") or {}
    return tuple(_item(item, currency) for item in listing.get("data") or ())


def _item(item: Mapping[str, Any], currency: str | None) -> LineItem:
    price = item.get("price") or {}
    code = _upper(item.get("currency")) or currency
    quantity = int(item.get("quantity") or 1)
    unit = price.get("unit_amount")
    if unit is None:  # tiered or custom prices: the line's subtotal is what was charged
        unit = int(item.get("amount_subtotal") or 0) // quantity
    return LineItem(
        name=item.get("description") or "item",
        quantity=quantity,
        unit_amount=from_stripe_amount(unit, code) if code else unit,
        currency=code,
        product_id=_id(price.get("product")),
        price_id=price.get("id"),
    )


def _upper(value: object) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def _id(value: object) -> str | None:
    """An expandable field: an id, or the expanded object carrying one."""
    if isinstance(value, Mapping):
        return str(value["id"])
    return str(value) if value else None


def _time(value: object) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


# --- webhooks -----------------------------------------------------------------------------


def webhook_event_from_stripe(event: Mapping[str, Any] | StripeObject) -> WebhookEvent:
    """A verified Stripe event -> what it means for a session (others are ``ignored``)."""
    data = _plain(event)
    event_type = str(data.get("type", ""))
    kind = _WEBHOOK_KINDS.get(event_type, "ignored")
    obj = (data.get("data") or {}).get("object") or {}
    is_session = obj.get("object") == "checkout.session"
    session = session_from_stripe(obj) if is_session and kind != "ignored" else None
    return WebhookEvent(
        provider=PROVIDER,
        event_id=str(data["id"]),
        kind=kind,
        provider_type=event_type,
        provider_session_id=str(obj["id"]) if is_session else None,
        session=session,
        occurred_at=_time(data.get("created")),
    )
