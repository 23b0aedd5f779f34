"""lomi's pure mapping: float amounts, statuses, requests, and the webhook scheme."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from events.values import (
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
from orchestrator.providers.lomi import transformers as lomi

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SECRET = SecretStr("lomi_whsec_test_0123456789")
SEED = Path(__file__).resolve().parents[3] / "shared" / "seeds" / "004_10dcbe4fbf556a94.txt"


def seed_session(**changes: Any) -> dict[str, Any]:
    """Every field of seed 004 (lomi's ``CheckoutSessions``) plus ``checkout_url``."""
    session: dict[str, Any] = {
        "allow_coupon_code": False,
        "allow_quantity": False,
        "allowed_providers": "WAVE,ORANGE",
        "amount": 10000.0,
        "cancel_url": "https://shop.example/cancel",
        "checkout_session_id": "5b7c1d52-9d7e-4c59-9a51-0a8f6c2d9e11",
        "created_at": "2026-11-21T11:00:00+00:00",
        "created_by": "f6f2c0de-0000-4000-8000-000000000001",
        "currency_code": "XOF",
        "customer_email": "awa@example.sn",
        "customer_id": None,
        "customer_name": "Awa Diop",
        "customer_phone": "+221770000000",
        "environment": "test",
        "expires_at": "2026-11-21T12:00:00+00:00",
        "installment_plan_id": None,
        "is_pos": False,
        "is_spi": False,
        "metadata": {lomi.SESSION_ID_KEY: "cs_ours", "order": "42", "items": 3},
        "organization_id": "0d4f2a3b-0000-4000-8000-000000000002",
        "payment_link_id": None,
        "payment_request_id": None,
        "price_id": None,
        "product_id": None,
        "public_description": None,
        "qr_code_data": None,
        "qr_code_type": None,
        "quantity": 1.0,
        "spi_account_number": None,
        "spi_qr_code_id": None,
        "status": "open",
        "subscription_id": None,
        "success_url": "https://shop.example/ok",
        "title": "Order 42",
        "updated_at": "2026-11-21T11:00:00+00:00",
        "checkout_url": "https://checkout.lomi.example/5b7c1d52",
    }
    session.update(changes)
    return session


def open_request(**changes: Any) -> OpenRequest:
    fields: dict[str, Any] = {
        "session_id": "cs_ours",
        "attempt": 2,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="XOF", amount=10000),
        "customer": Customer(email="awa@example.sn", phone="+221770000000"),
        "urls": SessionUrls(success_url="https://shop.example/ok"),
        "metadata": {"order": "42"},
    }
    fields.update(changes)
    return OpenRequest(**fields)


# --- amounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "minor"),
    [(10000.0, 10000), (10000, 10000), (0.0, 0), (2500.0, 2500), (1e15, 10**15)],
)
def test_a_whole_float_becomes_an_int(wire: object, minor: int) -> None:
    converted = lomi.to_minor_units(wire)
    assert converted == minor
    assert type(converted) is int


@pytest.mark.parametrize(
    "wire", [10000.5, 0.1, -1.0, -5, float("nan"), float("inf"), True, "10000", None]
)
def test_a_non_integral_or_odd_amount_is_rejected_never_rounded(wire: object) -> None:
    with pytest.raises(ProviderRejected):
        lomi.to_minor_units(wire)


@given(st.integers(min_value=0, max_value=2**53))
def test_every_whole_float_round_trips_exactly(minor: int) -> None:
    assert lomi.to_minor_units(float(minor)) == minor


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=0, max_value=2**52))
def test_no_fraction_is_ever_accepted(wire: float) -> None:
    if wire.is_integer():
        assert lomi.to_minor_units(wire) == int(wire)
    else:
        with pytest.raises(ProviderRejected):
            lomi.to_minor_units(wire)


def test_the_seed_float_amount_becomes_an_integer_of_francs() -> None:
    session = lomi.to_provider_session(seed_session())
    assert session.amounts is not None
    assert session.amounts.currency == "XOF"
    assert (session.amounts.subtotal, session.amounts.total) == (10000, 10000)
    assert type(session.amounts.total) is int
    assert (session.amounts.tax, session.amounts.discount) == (None, None)


def test_a_session_with_a_fractional_amount_is_rejected() -> None:
    with pytest.raises(ProviderRejected, match="whole number"):
        lomi.to_provider_session(seed_session(amount=10000.5))


def test_usd_amounts_are_cents() -> None:
    session = lomi.to_provider_session(seed_session(currency_code="usd", amount=1999.0))
    assert session.amounts is not None
    assert (session.currency, session.amounts.total) == ("USD", 1999)


# --- the seed and statuses --------------------------------------------------------------------


def test_the_fixture_carries_every_field_of_seed_004() -> None:
    if not SEED.exists():
        pytest.skip("shared/seeds is not beside this checkout")
    names = set(re.findall(r"^\*\*([a-z_]+)\*\* \|", SEED.read_text(), flags=re.MULTILINE))
    assert len(names) >= 35
    assert names <= set(seed_session())


def test_seed_session_becomes_canonical() -> None:
    session = lomi.to_provider_session(seed_session())
    assert session.provider is Provider.LOMI
    assert session.provider_session_id == "5b7c1d52-9d7e-4c59-9a51-0a8f6c2d9e11"
    assert session.session_id == "cs_ours"
    assert session.mode is Mode.PAYMENT
    assert session.checkout_url == "https://checkout.lomi.example/5b7c1d52"
    assert session.urls.cancel_url == "https://shop.example/cancel"
    assert session.customer.name == "Awa Diop"
    assert session.customer.phone == "+221770000000"
    assert session.metadata == {"order": "42", "items": "3"}
    assert session.expires_at == datetime(2026, 11, 21, 12, tzinfo=UTC)
    assert session.livemode is False
    assert session.client_secret is None


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("open", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        ("completed", (SessionStatus.COMPLETE, PaymentStatus.PAID)),
        ("expired", (SessionStatus.EXPIRED, PaymentStatus.UNPAID)),
        ("complete", (SessionStatus.OPEN, PaymentStatus.UNPAID)),  # Stripe's word: not lomi's
        ("processing", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        ("COMPLETED", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        (None, (SessionStatus.OPEN, PaymentStatus.UNPAID)),
    ],
)
def test_status_table_and_unmapped_is_pending(status: object, expected: object) -> None:
    assert lomi.map_status(status) == expected
    session = lomi.to_provider_session(seed_session(status=status))
    assert (session.status, session.payment_status) == expected


def test_live_environment_and_naive_times() -> None:
    session = lomi.to_provider_session(
        seed_session(environment="live", created_at="2026-11-21T11:00:00")
    )
    assert session.livemode is True
    assert session.created_at == datetime(2026, 11, 21, 11, tzinfo=UTC)


def test_something_that_is_not_a_session_is_unreadable() -> None:
    with pytest.raises(ProviderUnavailable):
        lomi.to_provider_session({"status": "open"})


# --- requests ---------------------------------------------------------------------------------


def test_create_body() -> None:
    body = lomi.build_create_body(open_request(client_reference_id="cart-7"))
    assert body == {
        "currency_code": "XOF",
        "amount": 10000,
        "metadata": {
            "order": "42",
            lomi.SESSION_ID_KEY: "cs_ours",
            lomi.CLIENT_REFERENCE_KEY: "cart-7",
        },
        "customer_email": "awa@example.sn",
        "customer_phone": "+221770000000",
        "success_url": "https://shop.example/ok",
    }


def test_create_body_from_line_items_sends_no_expiry() -> None:
    amount = RequestedAmount(
        currency="EUR",
        line_items=(LineItem(name="Tea", quantity=3, unit_amount=250),),
    )
    expires = datetime(2026, 11, 21, 13, tzinfo=UTC)
    body = lomi.build_create_body(open_request(amount=amount, expires_at=expires))
    assert (body["amount"], body["currency_code"], body["title"]) == (750, "EUR", "3 x Tea")
    assert "expires_at" not in body  # not in lomi's create schema: we enforce it ourselves
    assert "allowed_providers" not in body


@pytest.mark.parametrize("currency", ["GBP", "XAF", "JPY", "NGN"])
def test_other_currencies_are_rejected_before_the_call(currency: str) -> None:
    request = open_request(amount=RequestedAmount(currency=currency, amount=1000))
    with pytest.raises(ProviderRejected, match="XOF, USD or EUR"):
        lomi.build_create_body(request)


@pytest.mark.parametrize("mode", [Mode.SETUP, Mode.SUBSCRIPTION])
def test_only_payment_mode(mode: Mode) -> None:
    with pytest.raises(ProviderRejected):
        lomi.build_create_body(open_request(mode=mode))


def test_a_customer_email_or_id_is_required() -> None:
    with pytest.raises(ProviderRejected, match="email"):
        lomi.build_create_body(open_request(customer=Customer(name="Awa")))
    body = lomi.build_create_body(open_request(customer=Customer(provider_customer_id="cus-1")))
    assert body["customer_id"] == "cus-1"


# --- webhooks ---------------------------------------------------------------------------------


def webhook(event: str | None = "PAYMENT_SUCCEEDED", data: Any = None, **extra: Any) -> bytes:
    payload: dict[str, Any] = {
        "id": "evt_1",
        "event": event,
        "timestamp": "2026-11-21T12:00:00Z",
        "data": data if data is not None else {"checkout_session_id": "cs-lomi-1"},
        "lomi_environment": "test",
    }
    payload.update(extra)
    return json.dumps(payload).encode()


def signed(body: bytes, event: str = "PAYMENT_SUCCEEDED") -> dict[str, str]:
    return {"X-Lomi-Signature": lomi.sign_webhook(SECRET, body), "X-Lomi-Event": event}


def test_the_signature_is_hex_hmac_sha256_of_the_raw_body() -> None:
    body = webhook()
    expected = hmac.new(SECRET.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    assert lomi.sign_webhook(SECRET, body) == expected
    event = lomi.verify_webhook(SECRET, signed(body), body, NOW)
    assert (event.event_id, event.kind, event.provider_session_id) == (
        "evt_1",
        "completed",
        "cs-lomi-1",
    )
    assert event.occurred_at == NOW


def test_header_case_and_hex_case_do_not_matter() -> None:
    body = webhook()
    headers = {"x-lomi-signature": lomi.sign_webhook(SECRET, body).upper()}
    lomi.verify_signature(SECRET, headers, body)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b.replace(b"cs-lomi-1", b"cs-lomi-2")), id="body-changed"),
        pytest.param(
            lambda _h, b: ({"X-Lomi-Signature": lomi.sign_webhook(SecretStr("other"), b)}, b),
            id="wrong-secret",
        ),
        pytest.param(lambda _h, b: ({"X-Lomi-Event": "PAYMENT_SUCCEEDED"}, b), id="no-signature"),
        pytest.param(lambda _h, b: ({"X-Lomi-Signature": "zz"}, b), id="garbage"),
        pytest.param(lambda _h, b: ({"X-Lomi-Signature": "é" * 64}, b), id="non-ascii"),
    ],
)
def test_forged_webhooks_are_rejected(tamper: Any) -> None:
    body = webhook()
    headers, sent = tamper(signed(body), body)
    with pytest.raises(WebhookRejected):
        lomi.verify_webhook(SECRET, headers, sent, NOW)


def test_no_timestamp_is_signed_so_now_does_not_matter_and_the_id_dedupes() -> None:
    body = webhook()
    far = datetime(2030, 1, 1, tzinfo=UTC)
    first = lomi.verify_webhook(SECRET, signed(body), body, NOW)
    replay = lomi.verify_webhook(SECRET, signed(body), body, far)
    assert first.event_id == replay.event_id == "evt_1"


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        ("PAYMENT_SUCCEEDED", "completed"),
        ("CHECKOUT_COMPLETED", "completed"),
        ("PAYMENT_FAILED", "payment_failed"),
        ("payment_succeeded", "completed"),
        ("REFUND_COMPLETED", "ignored"),
        ("SUBSCRIPTION_CREATED", "ignored"),
    ],
)
def test_event_kinds(event: str, kind: str) -> None:
    body = webhook(event)
    assert lomi.verify_webhook(SECRET, signed(body, event), body, NOW).kind == kind


def test_a_session_in_the_data_is_translated() -> None:
    data = seed_session(status="completed")
    body = webhook("CHECKOUT_COMPLETED", data)
    event = lomi.verify_webhook(SECRET, signed(body), body, NOW)
    assert event.session is not None
    assert event.session.session_id == "cs_ours"
    assert (event.session.status, event.session.payment_status) == (
        SessionStatus.COMPLETE,
        PaymentStatus.PAID,
    )
    assert event.provider_session_id == data["checkout_session_id"]
    assert not lomi.needs_poll(event)


def test_a_transaction_naming_its_session_gives_the_id_without_a_session() -> None:
    data = {"transaction_id": "tx-1", "checkout_session": {"checkout_session_id": "cs-9"}}
    body = webhook("PAYMENT_SUCCEEDED", data)
    event = lomi.verify_webhook(SECRET, signed(body), body, NOW)
    assert (event.provider_session_id, event.session) == ("cs-9", None)
    assert not lomi.needs_poll(event)


def test_an_ambiguous_payment_says_poll() -> None:
    body = webhook("PAYMENT_SUCCEEDED", {"transaction_id": "tx-1", "amount": 10000.0})
    event = lomi.verify_webhook(SECRET, signed(body), body, NOW)
    assert (event.kind, event.provider_session_id, event.session) == ("completed", None, None)
    assert lomi.needs_poll(event)


def test_ignored_events_never_need_a_poll() -> None:
    body = webhook("REFUND_COMPLETED", {"transaction_id": "tx-1"})
    event = lomi.verify_webhook(SECRET, signed(body), body, NOW)
    assert event.kind == "ignored"
    assert not lomi.needs_poll(event)


def test_the_signed_body_names_the_event_not_the_unsigned_header() -> None:
    body = webhook("PAYMENT_FAILED")
    headers = signed(body, event="PAYMENT_SUCCEEDED")
    assert lomi.verify_webhook(SECRET, headers, body, NOW).kind == "payment_failed"
    header_only = webhook(None)
    event = lomi.verify_webhook(SECRET, signed(header_only), header_only, NOW)
    assert event.provider_type == "PAYMENT_SUCCEEDED"


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"event": "PAYMENT_SUCCEEDED", "data": {}}).encode(),  # no id: no dedupe
    ],
)
def test_a_signed_but_unreadable_body_is_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected):
        lomi.verify_webhook(SECRET, signed(body), body, NOW)


def test_a_signed_session_with_a_fractional_amount_is_rejected() -> None:
    body = webhook("CHECKOUT_COMPLETED", seed_session(status="completed", amount=99.5))
    with pytest.raises(WebhookRejected, match="whole number"):
        lomi.verify_webhook(SECRET, signed(body), body, NOW)
