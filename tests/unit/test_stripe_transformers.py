"""Stripe's pure mapping: the seeds' money facts, statuses, amount rules, requests, webhooks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import given
from hypothesis import strategies as st

from events.values import (
    Customer,
    LineItem,
    Mode,
    PaymentStatus,
    RequestedAmount,
    SessionStatus,
    SessionUrls,
)
from orchestrator.providers.base import OpenRequest, ProviderError, ProviderRejected
from orchestrator.providers.stripe import transformers as t

SEEDS = Path(__file__).parent / "stripe_seeds"


def seed(name: str) -> dict[str, Any]:
    return json.loads((SEEDS / name).read_text())  # type: ignore[no-any-return]


SEED_000 = "000_session_gbp_shipping.json"
SEED_001 = "001_session_usd_tax.json"


def request(**changes: Any) -> OpenRequest:
    base: dict[str, Any] = {
        "session_id": "sess_1",
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="USD", amount=2500),
        "urls": SessionUrls(
            success_url="https://shop.example/ok?cs={CHECKOUT_SESSION_ID}",
            cancel_url="https://shop.example/cancel",
        ),
    }
    return OpenRequest(**{**base, **changes})


# --- the seeds --------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", [False, True], ids=["dict", "StripeObject"])
def test_seed_000_gbp_complete_paid_with_old_top_level_shipping(typed: bool) -> None:
    raw = seed(SEED_000)
    source = stripe.convert_to_stripe_object(raw) if typed else raw
    session = t.session_from_stripe(source)
    assert session.currency == "GBP"
    assert session.amounts is not None
    assert session.amounts.subtotal == 4997
    assert session.amounts.total == 4997
    assert (session.amounts.discount, session.amounts.tax, session.amounts.shipping) == (0, 0, 0)
    assert session.status is SessionStatus.COMPLETE
    assert session.payment_status is PaymentStatus.PAID
    assert session.mode is Mode.PAYMENT
    assert session.checkout_url is None
    assert session.livemode is False
    assert session.references.payment_intent == "pi_3PXGTtIukMYD4P5f2M9Hg8xB"
    assert session.customer.email == "mo@mo.com"
    assert session.customer.country == "GB"
    assert [(i.name, i.unit_amount, i.quantity) for i in session.line_items] == [
        ("Baseus Usb Hub 4 Port", 1998, 1),
        ("Logitech G304 Wireless Mouse", 2999, 1),
    ]
    assert session.created_at == datetime.fromtimestamp(1719725909, UTC)
    shipping = t.shipping_of(source)
    assert shipping is not None
    assert shipping.name == "king mo the 8th"
    assert shipping.address is not None
    assert (shipping.address.city, shipping.address.country) == ("Darenth", "GB")
    assert shipping.address.postal_code == "L3P 1X5"


@pytest.mark.parametrize("typed", [False, True], ids=["dict", "StripeObject"])
def test_seed_001_usd_with_tax(typed: bool) -> None:
    raw = seed(SEED_001)
    session = t.session_from_stripe(stripe.convert_to_stripe_object(raw) if typed else raw)
    assert session.amounts is not None
    assert session.amounts.subtotal == 2500
    assert session.amounts.tax == 500
    assert session.amounts.total == 3000
    assert session.currency == "USD"
    assert session.payment_status is PaymentStatus.PAID
    assert session.status is SessionStatus.COMPLETE
    assert session.client_reference_id == "00000000-0000-0000-0000-000000000000"
    assert session.references.invoice == "in_1ExampleInvoice00000000"
    assert session.references.customer == "cus_ExampleCustomer"
    assert session.customer.provider_customer_id == "cus_ExampleCustomer"
    assert session.livemode is True
    assert t.shipping_of(raw) is None


def test_new_api_shipping_from_collected_information() -> None:
    raw = seed(SEED_000)
    del raw["shipping_details"]
    raw["ui_mode"] = "hosted_page"
    raw["collected_information"] = {
        "shipping_details": {"name": "New Shape", "address": {"city": "Leeds", "country": "GB"}}
    }
    shipping = t.shipping_of(raw)
    assert shipping is not None
    assert shipping.name == "New Shape"
    assert shipping.address is not None
    assert shipping.address.city == "Leeds"
    assert t.session_from_stripe(raw).status is SessionStatus.COMPLETE


def test_client_secret_is_secret_and_kept_out_of_raw() -> None:
    raw = {**seed(SEED_000), "client_secret": "cs_test_x_secret_y", "ui_mode": "embedded_page"}
    session = t.session_from_stripe(raw)
    assert session.client_secret is not None
    assert session.client_secret.get_secret_value() == "cs_test_x_secret_y"
    assert "cs_test_x_secret_y" not in repr(session)
    assert "client_secret" not in session.raw
    assert "cs_test_x_secret_y" not in session.model_dump_json()


def test_setup_session_has_no_amounts() -> None:
    raw = {
        **seed(SEED_000),
        "mode": "setup",
        "amount_subtotal": None,
        "amount_total": None,
        "payment_status": "no_payment_required",
        "setup_intent": "seti_1",
        "payment_intent": None,
    }
    session = t.session_from_stripe(raw)
    assert session.amounts is None
    assert session.payment_status is PaymentStatus.NO_PAYMENT_REQUIRED
    assert session.references.setup_intent == "seti_1"


def test_expanded_references_give_their_ids() -> None:
    raw = {**seed(SEED_001), "customer": {"id": "cus_X", "object": "customer"}}
    assert t.session_from_stripe(raw).references.customer == "cus_X"


# --- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "payment_status", "expected"),
    [
        ("open", "unpaid", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        ("complete", "paid", (SessionStatus.COMPLETE, PaymentStatus.PAID)),
        ("complete", "unpaid", (SessionStatus.COMPLETE, PaymentStatus.UNPAID)),
        (
            "complete",
            "no_payment_required",
            (SessionStatus.COMPLETE, PaymentStatus.NO_PAYMENT_REQUIRED),
        ),
        ("expired", "unpaid", (SessionStatus.EXPIRED, PaymentStatus.UNPAID)),
        ("complete", "brand_new_status", (SessionStatus.COMPLETE, PaymentStatus.UNPAID)),
        ("settling", "paid", (SessionStatus.OPEN, PaymentStatus.UNPAID)),  # unknown: pending
        (None, None, (SessionStatus.OPEN, PaymentStatus.UNPAID)),
    ],
)
def test_statuses(status: Any, payment_status: Any, expected: Any) -> None:
    assert t.statuses(status, payment_status) == expected


def test_unknown_mode_is_a_provider_error() -> None:
    with pytest.raises(ProviderError):
        t.session_from_stripe({**seed(SEED_000), "mode": "barter"})


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "canonical", "stripe_amount"),
    [
        ("USD", 1234, 1234),
        ("JPY", 500, 500),
        ("XOF", 10000, 10000),
        ("UGX", 7000, 7000),
        ("MGA", 1000, 10),  # ISO 2 digits, Stripe zero-decimal
        ("ISK", 5, 500),  # ISO 0 digits, Stripe two-decimal in hundreds
        ("KWD", 1230, 1230),
        ("BHD", 10, 10),
        ("HUF", 17500, 17500),
    ],
)
def test_amount_conversion(currency: str, canonical: int, stripe_amount: int) -> None:
    assert t.to_stripe_amount(canonical, currency) == stripe_amount
    assert t.from_stripe_amount(stripe_amount, currency) == canonical


@pytest.mark.parametrize(
    ("currency", "amount"),
    [
        ("MGA", 1050),  # half an ariary: Stripe charges whole ariary only
        ("KWD", 1235),  # three-decimal amounts must end in 0
        ("JOD", 1),
        ("IQD", 1000),  # not a Stripe currency
        ("LYD", 1000),
    ],
)
def test_amounts_stripe_cannot_take_are_rejected(currency: str, amount: int) -> None:
    with pytest.raises(ProviderRejected):
        t.to_stripe_amount(amount, currency)


def test_isk_from_stripe_with_a_fraction_is_an_error() -> None:
    with pytest.raises(ProviderError):
        t.from_stripe_amount(550, "ISK")


@given(
    currency=st.sampled_from(sorted(t.STRIPE_CURRENCIES)),
    amount=st.integers(min_value=0, max_value=10**12),
)
def test_conversion_round_trips_whenever_accepted(currency: str, amount: int) -> None:
    try:
        sent = t.to_stripe_amount(amount, currency)
    except ProviderRejected:
        return
    assert t.from_stripe_amount(sent, currency) == amount


def test_capabilities() -> None:
    caps = t.capabilities()
    assert {"USD", "EUR", "XOF", "JPY", "ISK", "MGA", "KWD"} <= caps.currencies
    assert "IQD" not in caps.currencies
    assert caps.modes == frozenset(Mode)
    assert caps.min_amount["USD"] == 50


# --- requests ---------------------------------------------------------------------------------


def test_payment_with_an_amount_is_one_line_item() -> None:
    params = t.create_params(request(client_reference_id="order-7"))
    assert params["mode"] == "payment"
    assert params["ui_mode"] == "hosted_page"
    assert params["line_items"] == [
        {
            "price_data": {
                "currency": "usd",
                "unit_amount": 2500,
                "product_data": {"name": "Order order-7"},
            },
            "quantity": 1,
        }
    ]
    assert params["success_url"] == "https://shop.example/ok?cs={CHECKOUT_SESSION_ID}"
    assert params["cancel_url"] == "https://shop.example/cancel"
    assert params["client_reference_id"] == "order-7"
    assert params["metadata"] == {"orchestrator_session_id": "sess_1", "orchestrator_attempt": "1"}
    assert "idempotency_key" not in params


def test_line_items_use_stripe_units_and_price_ids() -> None:
    amount = RequestedAmount(
        currency="ISK",
        line_items=(
            LineItem(name="Wool hat", quantity=2, unit_amount=4990),
            LineItem(name="Plan", quantity=1, unit_amount=100, price_id="price_123"),
        ),
    )
    params = t.create_params(request(amount=amount, metadata={"cart": "c9"}))
    items = params["line_items"]
    assert items[0]["price_data"]["unit_amount"] == 499000
    assert items[0]["price_data"]["currency"] == "isk"
    assert items[0]["quantity"] == 2
    assert items[1] == {"price": "price_123", "quantity": 1}
    assert params["metadata"]["cart"] == "c9"


def test_below_stripe_minimum_charge_is_rejected() -> None:
    with pytest.raises(ProviderRejected, match="minimum"):
        t.create_params(request(amount=RequestedAmount(currency="USD", amount=49)))


def test_three_decimal_amount_not_ending_in_zero_is_rejected_before_any_call() -> None:
    with pytest.raises(ProviderRejected, match="end in 0"):
        t.create_params(request(amount=RequestedAmount(currency="KWD", amount=12345)))


def test_embedded_needs_a_return_url_and_sends_no_success_url() -> None:
    with pytest.raises(ProviderRejected, match="return_url"):
        t.create_params(request(ui_mode="embedded"))
    params = t.create_params(
        request(ui_mode="embedded", urls=SessionUrls(return_url="https://shop.example/back"))
    )
    assert params["ui_mode"] == "embedded_page"
    assert params["return_url"] == "https://shop.example/back"
    assert "success_url" not in params


def test_setup_mode_sends_a_currency_and_no_items() -> None:
    params = t.create_params(
        request(mode=Mode.SETUP, amount=RequestedAmount(currency="EUR"), customer=Customer())
    )
    assert params["currency"] == "eur"
    assert "line_items" not in params


def test_subscription_prices_recur() -> None:
    params = t.create_params(
        request(mode=Mode.SUBSCRIPTION, metadata={"recurring_interval": "year"})
    )
    assert params["line_items"][0]["price_data"]["recurring"] == {"interval": "year"}
    with pytest.raises(ProviderRejected):
        t.create_params(request(mode=Mode.SUBSCRIPTION, metadata={"recurring_interval": "lunar"}))


def test_customer_id_or_email() -> None:
    by_id = t.create_params(
        request(customer=Customer(provider_customer_id="cus_1", email="a@b.example"))
    )
    assert by_id["customer"] == "cus_1"
    assert "customer_email" not in by_id
    foreign_id = t.create_params(
        request(
            customer=Customer(
                provider_customer_id="01G65Z755AFWAKHE12NY0CQ9FH", email="a@b.example"
            )
        )
    )
    assert foreign_id["customer_email"] == "a@b.example"
    assert "customer" not in foreign_id


def test_expires_at_is_unix_seconds() -> None:
    when = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert t.create_params(request(expires_at=when))["expires_at"] == int(when.timestamp())


def test_currency_stripe_does_not_take_is_rejected_in_any_mode() -> None:
    with pytest.raises(ProviderRejected):
        t.create_params(request(mode=Mode.SETUP, amount=RequestedAmount(currency="IQD")))


# --- webhooks ---------------------------------------------------------------------------------


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "created": 1719725999,
        "type": event_type,
        "data": {"object": obj},
    }


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("checkout.session.completed", "completed"),
        ("checkout.session.async_payment_succeeded", "async_payment_succeeded"),
        ("checkout.session.async_payment_failed", "async_payment_failed"),
        ("checkout.session.expired", "expired"),
    ],
)
def test_checkout_events(event_type: str, kind: str) -> None:
    translated = t.webhook_event_from_stripe(event(event_type, seed(SEED_000)))
    assert translated.kind == kind
    assert translated.event_id == "evt_1"
    assert translated.provider_type == event_type
    assert translated.provider_session_id == seed(SEED_000)["id"]
    assert translated.session is not None
    assert translated.occurred_at == datetime.fromtimestamp(1719725999, UTC)


def test_completed_may_be_unpaid() -> None:
    unpaid = {**seed(SEED_000), "payment_status": "unpaid"}
    translated = t.webhook_event_from_stripe(event("checkout.session.completed", unpaid))
    assert translated.kind == "completed"
    assert translated.session is not None
    assert translated.session.payment_status is PaymentStatus.UNPAID


def test_other_events_are_ignored() -> None:
    translated = t.webhook_event_from_stripe(
        event("payment_intent.succeeded", {"id": "pi_1", "object": "payment_intent"})
    )
    assert translated.kind == "ignored"
    assert translated.session is None
    assert translated.provider_session_id is None
    async_session = t.webhook_event_from_stripe(event("checkout.session.created", seed(SEED_001)))
    assert async_session.kind == "ignored"
    assert async_session.provider_session_id == seed(SEED_001)["id"]


def test_metadata_over_stripes_limit_with_ours_is_rejected() -> None:
    full = {f"k{n}": "v" for n in range(49)}
    with pytest.raises(ProviderRejected, match="50"):
        t.create_params(request(metadata=full))
    assert len(t.create_params(request(metadata=dict(list(full.items())[:48])))["metadata"]) == 50


def test_client_reference_over_200_characters_is_rejected() -> None:
    with pytest.raises(ProviderRejected, match="200"):
        t.create_params(request(client_reference_id="x" * 201))
