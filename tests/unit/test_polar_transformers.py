"""Polar's pure mapping: statuses, the amounts trap, requests, and the webhook scheme."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from events.values import (
    Address,
    Customer,
    LineItem,
    Mode,
    PaymentStatus,
    Provider,
    RequestedAmount,
    SessionStatus,
    SessionUrls,
)
from orchestrator.providers.base import (
    OpenRequest,
    ProviderRejected,
    ProviderUnavailable,
    WebhookRejected,
)
from orchestrator.providers.polar import transformers as polar

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SECRET = SecretStr("whsec_" + base64.b64encode(b"polar-test-secret-0123456789").decode())
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "002_91aa56e0fbae53d6.txt"


def seed_checkout(**changes: Any) -> dict[str, Any]:
    """Every field of seed 002 (Polar's 0.x ``Checkout``) plus today's amount fields."""
    checkout: dict[str, Any] = {
        "created_at": "2026-11-21T11:59:00Z",
        "modified_at": "2026-11-21T11:59:30Z",
        "id": "9f2d7a7e-6d0b-4b1f-8d5e-2f7f3f9c1a10",
        "payment_processor": "stripe",
        "status": "open",
        "client_secret": "polar_c_s3cr3t_value",
        "url": "https://polar.example/checkout/polar_c_s3cr3t_value",
        "expires_at": "2026-11-21T12:59:00Z",
        "success_url": "https://shop.example/ok?checkout_id={CHECKOUT_ID}",
        "embed_origin": None,
        "amount": 10000,
        "discount_amount": 1000,
        "net_amount": 9000,
        "tax_amount": 1800,
        "currency": "usd",
        "subtotal_amount": 9000,  # after discount, before tax: the trap
        "total_amount": 10800,
        "product_id": "prod_1",
        "product_price_id": "price_1",
        "discount_id": "disc_1",
        "allow_discount_codes": True,
        "is_discount_applicable": True,
        "is_free_product_price": False,
        "is_payment_required": True,
        "is_payment_setup_required": False,
        "is_payment_form_required": True,
        "customer_id": None,
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "customer_ip_address": None,
        "customer_billing_address": {"country": "FR", "city": "Paris", "line1": "1 rue X"},
        "customer_tax_id": "FR123",
        "payment_processor_metadata": {},
        "metadata": {polar.SESSION_ID_KEY: "cs_ours", "order": "42", "gift": True},
        "product": {"id": "prod_1", "name": "E-book", "is_recurring": False},
        "product_price": {"id": "price_1", "type": "one_time", "amount_type": "fixed"},
        "discount": None,
        "subscription_id": None,
        "attached_custom_fields": [],
        "customer_metadata": {},
        "custom_field_data": {},
    }
    checkout.update(changes)
    return checkout


def open_request(**changes: Any) -> OpenRequest:
    fields: dict[str, Any] = {
        "session_id": "cs_ours",
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="USD", amount=2500),
        "customer": Customer(email="ada@example.com", name="Ada"),
        "urls": SessionUrls(success_url="https://shop.example/ok"),
        "metadata": {"order": "42"},
    }
    fields.update(changes)
    return OpenRequest(**fields)


# --- the seed ---------------------------------------------------------------------------------


def test_the_fixture_carries_every_field_of_seed_002() -> None:
    if not SEED.exists():
        pytest.skip("shared/seeds is not beside this checkout")
    names = set(re.findall(r"^([a-z_]+) \|$", SEED.read_text(), flags=re.MULTILINE))
    assert len(names) >= 39
    assert names <= set(seed_checkout())


def test_seed_checkout_becomes_canonical() -> None:
    session = polar.checkout_to_provider_session(seed_checkout())
    assert session.provider is Provider.POLAR
    assert session.provider_session_id == "9f2d7a7e-6d0b-4b1f-8d5e-2f7f3f9c1a10"
    assert session.session_id == "cs_ours"
    assert (session.status, session.payment_status) == (SessionStatus.OPEN, PaymentStatus.UNPAID)
    assert session.mode is Mode.PAYMENT
    assert session.currency == "USD"
    assert session.checkout_url == "https://polar.example/checkout/polar_c_s3cr3t_value"
    assert session.created_at == datetime(2026, 11, 21, 11, 59, tzinfo=UTC)
    assert session.expires_at == datetime(2026, 11, 21, 12, 59, tzinfo=UTC)
    assert session.metadata == {"order": "42", "gift": "true"}
    assert session.customer.email == "ada@example.com"
    assert session.customer.country == "FR"
    assert session.customer.tax_id == "FR123"
    assert session.line_items == (
        LineItem(
            name="E-book",
            quantity=1,
            unit_amount=10000,
            currency="USD",
            product_id="prod_1",
            price_id="price_1",
        ),
    )


# --- the amounts trap -------------------------------------------------------------------------


def test_subtotal_is_amount_before_discount_never_subtotal_amount() -> None:
    amounts = polar.checkout_to_provider_session(seed_checkout()).amounts
    assert amounts is not None
    assert (amounts.subtotal, amounts.discount, amounts.tax, amounts.total) == (
        10000,
        1000,
        1800,
        10800,
    )
    assert amounts.subtotal != seed_checkout()["subtotal_amount"]
    assert amounts.shipping is None


def test_tax_not_computed_yet_is_none_not_zero() -> None:
    amounts = polar.checkout_to_provider_session(seed_checkout(tax_amount=None)).amounts
    assert amounts is not None
    assert amounts.tax is None


def test_the_0x_shape_without_discount_amount_derives_it_from_subtotal_amount() -> None:
    checkout = seed_checkout()
    del checkout["discount_amount"], checkout["net_amount"]
    amounts = polar.checkout_to_provider_session(checkout).amounts
    assert amounts is not None
    assert (amounts.subtotal, amounts.discount) == (10000, 1000)


def test_no_currency_means_no_amounts() -> None:
    session = polar.checkout_to_provider_session(seed_checkout(currency=None))
    assert session.currency is None
    assert session.amounts is None


def test_order_subtotal_amount_is_before_discount() -> None:
    order = {
        "id": "ord_1",
        "checkout_id": "co_1",
        "status": "paid",
        "paid": True,
        "currency": "eur",
        "subtotal_amount": 10000,
        "discount_amount": 1000,
        "net_amount": 9000,
        "tax_amount": 1800,
        "total_amount": 10800,
        "metadata": {polar.SESSION_ID_KEY: "cs_ours"},
        "subscription_id": "sub_1",
    }
    session = polar.order_to_provider_session(order)
    assert session.provider_session_id == "co_1"
    assert session.session_id == "cs_ours"
    assert (session.status, session.payment_status) == (SessionStatus.COMPLETE, PaymentStatus.PAID)
    assert session.mode is Mode.SUBSCRIPTION
    assert session.amounts is not None
    assert (session.amounts.subtotal, session.amounts.discount, session.amounts.total) == (
        10000,
        1000,
        10800,
    )


# --- statuses, modes, secrets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        ("expired", (SessionStatus.EXPIRED, PaymentStatus.UNPAID)),
        ("confirmed", (SessionStatus.PROCESSING, PaymentStatus.UNPAID)),
        ("succeeded", (SessionStatus.COMPLETE, PaymentStatus.PAID)),
        ("failed", (SessionStatus.FAILED, PaymentStatus.UNPAID)),
        ("refunded_someday", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        ("SUCCEEDED", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        (None, (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        (3, (SessionStatus.OPEN, PaymentStatus.UNPAID)),
    ],
)
def test_status_table_and_unmapped_is_pending(status: object, expected: object) -> None:
    assert polar.map_status(status) == expected


def test_a_free_succeeded_checkout_needs_no_payment() -> None:
    checkout = seed_checkout(status="succeeded", is_payment_required=False, total_amount=0)
    assert polar.checkout_to_provider_session(checkout).payment_status is (
        PaymentStatus.NO_PAYMENT_REQUIRED
    )


@pytest.mark.parametrize(
    ("price", "product", "mode"),
    [
        ({"type": "recurring", "recurring_interval": "month"}, {"name": "Pro"}, Mode.SUBSCRIPTION),
        ({"recurring_interval": "year"}, {"name": "Pro"}, Mode.SUBSCRIPTION),
        (None, {"name": "Pro", "is_recurring": True}, Mode.SUBSCRIPTION),
        ({"type": "one_time"}, {"name": "Book", "is_recurring": False}, Mode.PAYMENT),
        (None, None, Mode.PAYMENT),
    ],
)
def test_subscription_when_the_price_is_recurring(
    price: object, product: object, mode: Mode
) -> None:
    checkout = seed_checkout(product_price=price, product=product)
    assert polar.checkout_to_provider_session(checkout).mode is mode


def test_client_secret_is_secret_and_redacted_from_raw() -> None:
    session = polar.checkout_to_provider_session(seed_checkout())
    assert session.client_secret is not None
    assert session.client_secret.get_secret_value() == "polar_c_s3cr3t_value"
    assert "client_secret=SecretStr('**********')" in repr(session)
    assert session.raw["client_secret"] == "[redacted]"  # noqa: S105
    # Polar's hosted URL embeds the secret: the URL is the customer's capability, as at Stripe.
    assert json.dumps(session.raw).count("s3cr3t") == 1


def test_internal_metadata_comes_back_as_fields_not_metadata() -> None:
    metadata = {
        polar.SESSION_ID_KEY: "cs_ours",
        polar.CLIENT_REFERENCE_KEY: "cart-7",
        polar.ATTEMPT_KEY: "checkout-cs_ours-attempt-1",
        "order": "42",
    }
    session = polar.checkout_to_provider_session(seed_checkout(metadata=metadata))
    assert session.client_reference_id == "cart-7"
    assert session.metadata == {"order": "42"}


def test_an_unreadable_checkout_is_a_provider_error() -> None:
    with pytest.raises(ProviderUnavailable):
        polar.checkout_to_provider_session({"status": "open"})
    with pytest.raises(ProviderUnavailable):
        polar.checkout_to_provider_session(seed_checkout(created_at="yesterday"))


# --- requests ---------------------------------------------------------------------------------


def test_create_body_prices_the_configured_product_ad_hoc() -> None:
    body = polar.build_create_body(
        open_request(client_reference_id="cart-7"),
        payment_product_id="prod_once",
        subscription_product_id=None,
    )
    assert body["products"] == ["prod_once"]
    assert body["prices"] == {
        "prod_once": [{"amount_type": "fixed", "price_amount": 2500, "price_currency": "usd"}]
    }
    assert body["metadata"] == {
        "order": "42",
        polar.SESSION_ID_KEY: "cs_ours",
        polar.ATTEMPT_KEY: "checkout-cs_ours-attempt-1",
        polar.CLIENT_REFERENCE_KEY: "cart-7",
    }
    assert body["customer_email"] == "ada@example.com"
    assert body["success_url"] == "https://shop.example/ok"
    assert "return_url" not in body
    assert "customer_id" not in body


def test_create_body_sums_line_items_and_passes_the_billing_country() -> None:
    amount = RequestedAmount(
        currency="EUR",
        line_items=(
            LineItem(name="A", quantity=2, unit_amount=500),
            LineItem(name="B", quantity=1, unit_amount=250),
        ),
    )
    customer = Customer(email="a@b.example", address=Address(country="de", city="Berlin"))
    body = polar.build_create_body(
        open_request(amount=amount, customer=customer),
        payment_product_id="p",
        subscription_product_id=None,
    )
    assert body["prices"]["p"][0]["price_amount"] == 1250
    assert body["prices"]["p"][0]["price_currency"] == "eur"
    assert body["customer_billing_address"] == {"country": "DE", "city": "Berlin"}


def test_setup_mode_is_rejected_before_any_call() -> None:
    with pytest.raises(ProviderRejected, match="no setup mode"):
        polar.build_create_body(
            open_request(mode=Mode.SETUP), payment_product_id="p", subscription_product_id="s"
        )


def test_subscription_uses_the_recurring_product_or_is_rejected() -> None:
    request = open_request(mode=Mode.SUBSCRIPTION)
    body = polar.build_create_body(request, payment_product_id="p", subscription_product_id="s")
    assert body["products"] == ["s"]
    with pytest.raises(ProviderRejected):
        polar.build_create_body(request, payment_product_id="p", subscription_product_id=None)


# --- webhooks: the signature ------------------------------------------------------------------


def event_body(event_type: str = "checkout.updated", **data: Any) -> bytes:
    payload = {"type": event_type, "timestamp": "2026-11-21T12:00:00Z", "data": data}
    return json.dumps(payload).encode()


def signed(body: bytes, *, at: datetime = NOW, msg_id: str = "msg_1") -> dict[str, str]:
    return polar.sign_webhook(SECRET, msg_id, int(at.timestamp()), body)


def test_a_correct_signature_is_accepted_and_the_event_id_is_webhook_id() -> None:
    body = event_body(**seed_checkout(status="confirmed"))
    event = polar.verify_webhook(SECRET, signed(body, msg_id="msg_42"), body, NOW)
    assert event.event_id == "msg_42"
    assert event.kind == "processing"


def test_header_names_are_case_insensitive() -> None:
    body = event_body(**seed_checkout())
    headers = {key.upper(): value for key, value in signed(body).items()}
    assert polar.verify_signature(SECRET, headers, body, NOW) == "msg_1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b + b" "), id="body-changed"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "msg_2"}, b), id="id-changed"),
        pytest.param(
            lambda _h, b: (
                polar.sign_webhook(SecretStr("whsec_other"), "msg_1", int(NOW.timestamp()), b),
                b,
            ),
            id="wrong-secret",
        ),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1,AAAA"}, b), id="garbage"),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1,%%%"}, b), id="not-base64"),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1,é"}, b), id="non-ascii"),
        pytest.param(
            lambda h, b: ({**h, "webhook-timestamp": "\uff11\uff12"}, b), id="non-ascii-time"
        ),
        pytest.param(
            lambda h, b: (
                {**h, "webhook-signature": h["webhook-signature"].replace("v1", "v2")},
                b,
            ),
            id="other-version-only",
        ),
        pytest.param(
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
            id="no-signature",
        ),
        pytest.param(lambda h, b: ({**h, "webhook-timestamp": "12.5"}, b), id="bad-timestamp"),
    ],
)
def test_forged_webhooks_are_rejected(tamper: Any) -> None:
    body = event_body(**seed_checkout(status="succeeded"))
    headers, sent = tamper(signed(body), body)
    with pytest.raises(WebhookRejected):
        polar.verify_webhook(SECRET, headers, sent, NOW)


def test_one_good_signature_among_several_is_enough() -> None:
    body = event_body(**seed_checkout())
    good = signed(body)
    headers = {**good, "webhook-signature": f"v1,AAAA v2,xyz {good['webhook-signature']}"}
    assert polar.verify_signature(SECRET, headers, body, NOW) == "msg_1"


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(seconds=-300), True),
        (timedelta(seconds=300), True),
        (timedelta(seconds=-301), False),
        (timedelta(seconds=301), False),
        (timedelta(hours=-2), False),
        (timedelta(hours=1), False),
    ],
)
def test_stale_and_future_timestamps_are_rejected(offset: timedelta, accepted: bool) -> None:
    body = event_body(**seed_checkout())
    headers = signed(body, at=NOW + offset)
    if accepted:
        polar.verify_signature(SECRET, headers, body, NOW)
        return
    with pytest.raises(WebhookRejected, match=r"too old|future"):
        polar.verify_signature(SECRET, headers, body, NOW)


def test_the_key_is_the_utf8_bytes_of_the_whole_whsec_string() -> None:
    """Polar's quirk, cross-checked with the reference ``standardwebhooks`` library."""
    standardwebhooks = pytest.importorskip("standardwebhooks")
    body = event_body(**seed_checkout(status="succeeded"))
    now = datetime.now(UTC).replace(microsecond=0)
    whole = SECRET.get_secret_value()
    as_polar = standardwebhooks.Webhook(base64.b64encode(whole.encode("utf-8")).decode())
    plain = standardwebhooks.Webhook(whole)  # strips "whsec_" and base64-decodes the rest

    ours = signed(body, at=now)["webhook-signature"]
    assert as_polar.sign("msg_1", now, body.decode()) == ours
    assert plain.sign("msg_1", now, body.decode()) != ours
    as_polar.verify(body, signed(body, at=now))  # the reference verifier agrees with our signer

    plain_headers = {
        **signed(body, at=now),
        "webhook-signature": plain.sign("msg_1", now, body.decode()),
    }
    with pytest.raises(WebhookRejected, match="no matching signature"):
        polar.verify_signature(SECRET, plain_headers, body, now)


# --- webhooks: what they mean -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "status", "kind"),
    [
        ("checkout.updated", "confirmed", "processing"),
        ("checkout.updated", "succeeded", "completed"),
        ("checkout.updated", "failed", "payment_failed"),
        ("checkout.updated", "expired", "expired"),
        ("checkout.updated", "open", "ignored"),
        ("checkout.updated", "something_new", "ignored"),
        ("checkout.expired", "expired", "expired"),
        ("checkout.created", "open", "ignored"),
    ],
)
def test_checkout_events(event_type: str, status: str, kind: str) -> None:
    body = event_body(event_type, **seed_checkout(status=status))
    event = polar.verify_webhook(SECRET, signed(body), body, NOW)
    assert event.kind == kind
    assert event.provider_type == event_type
    assert event.provider_session_id == seed_checkout()["id"]
    assert event.session is not None
    assert event.session.session_id == "cs_ours"
    assert event.occurred_at == NOW


def test_succeeded_checkout_event_carries_a_paid_session() -> None:
    body = event_body(**seed_checkout(status="succeeded"))
    event = polar.verify_webhook(SECRET, signed(body), body, NOW)
    assert event.session is not None
    assert event.session.payment_status is PaymentStatus.PAID
    assert event.session.status is SessionStatus.COMPLETE


def test_order_paid_completes_the_orders_checkout() -> None:
    order = {"id": "ord_1", "checkout_id": "co_1", "status": "paid", "paid": True}
    order |= {"currency": "usd", "total_amount": 10800, "metadata": {polar.SESSION_ID_KEY: "cs_x"}}
    body = event_body("order.paid", **order)
    event = polar.verify_webhook(SECRET, signed(body), body, NOW)
    assert (event.kind, event.provider_session_id) == ("completed", "co_1")
    assert event.session is not None
    assert event.session.session_id == "cs_x"


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("order.paid", {"id": "ord_2", "checkout_id": None, "status": "paid"}),  # a renewal
        ("order.refunded", {"id": "ord_1", "checkout_id": "co_1", "status": "refunded"}),
        ("order.created", {"id": "ord_1", "checkout_id": "co_1"}),
        ("subscription.active", {"id": "sub_1"}),
        ("benefit_grant.created", {}),
    ],
)
def test_other_events_are_ignored(event_type: str, data: dict[str, Any]) -> None:
    body = event_body(event_type, **data)
    event = polar.verify_webhook(SECRET, signed(body), body, NOW)
    assert event.kind == "ignored"
    assert event.session is None


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"data": {}}'])
def test_a_signed_but_unreadable_body_is_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        polar.verify_webhook(SECRET, signed(body), body, NOW)


def test_a_signed_checkout_event_with_an_unreadable_checkout_is_rejected() -> None:
    body = event_body("checkout.updated", id="co_1", status="succeeded", created_at="soon")
    with pytest.raises(WebhookRejected):
        polar.verify_webhook(SECRET, signed(body), body, NOW)
