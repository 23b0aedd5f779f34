"""Kong billing's pure mapping: seed 003's result shape, setup-only requests, statuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from events.values import Customer, Mode, PaymentStatus, Provider, RequestedAmount, SessionStatus
from events.values import SessionUrls as Urls
from orchestrator.providers.base import OpenRequest, ProviderError, ProviderRejected
from orchestrator.providers.kong import transformers as t
from orchestrator.providers.stripe import transformers as stripe_t

CUSTOMER = "01G65Z755AFWAKHE12NY0CQ9FH"  # the schema's example ULID

# an instance of seed 003's BillingAppStripeCreateCheckoutSessionResult
RESULT: dict[str, Any] = {
    "customer_id": CUSTOMER,
    "stripe_customer_id": "cus_Kong123",
    "session_id": "cs_test_kong0001",
    "setup_intent_id": "seti_1Kong",
    "client_secret": "cs_test_kong0001_secret_abc",
    "client_reference_id": "acct-9",
    "customer_email": "billing@acme.example",
    "currency": "USD",
    "created_at": "2023-01-01T01:01:01.001Z",
    "expires_at": "2023-01-02T01:01:01.001Z",
    "metadata": {"orchestrator_session_id": "sess_1", "billing_customer_id": CUSTOMER},
    "status": "open",
    "url": "https://checkout.stripe.com/c/pay/cs_test_kong0001",
    "mode": "setup",
    "cancel_url": "https://app.example/no",
    "success_url": "https://app.example/ok",
}


def request(**changes: Any) -> OpenRequest:
    values: dict[str, Any] = {
        "session_id": "sess_1",
        "attempt": 2,
        "mode": Mode.SETUP,
        "amount": RequestedAmount(currency="EUR"),
        "metadata": {"billing_customer_id": CUSTOMER, "plan": "pro"},
        "urls": Urls(success_url="https://app.example/ok", cancel_url="https://app.example/no"),
        **changes,
    }
    return OpenRequest(**values)


def test_result_parses() -> None:
    session = t.session_from_kong(RESULT)
    assert session.provider is Provider.KONG
    assert session.provider_session_id == "cs_test_kong0001"
    assert session.session_id == "sess_1"
    assert session.mode is Mode.SETUP
    assert session.amounts is None
    assert session.currency == "USD"
    assert (session.status, session.payment_status) == (
        SessionStatus.OPEN,
        PaymentStatus.NO_PAYMENT_REQUIRED,
    )
    assert session.customer.provider_customer_id == CUSTOMER
    assert session.customer.email == "billing@acme.example"
    assert session.references.customer == "cus_Kong123"
    assert session.references.setup_intent == "seti_1Kong"
    assert session.created_at == datetime(2023, 1, 1, 1, 1, 1, 1000, tzinfo=UTC)
    assert session.checkout_url == RESULT["url"]
    assert session.client_secret is not None
    assert "client_secret" not in session.raw
    assert session.livemode is False


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("complete", (SessionStatus.COMPLETE, PaymentStatus.NO_PAYMENT_REQUIRED)),
        ("expired", (SessionStatus.EXPIRED, PaymentStatus.NO_PAYMENT_REQUIRED)),
        ("something_new", (SessionStatus.OPEN, PaymentStatus.UNPAID)),
        (None, (SessionStatus.OPEN, PaymentStatus.UNPAID)),
    ],
)
def test_statuses(status: Any, expected: Any) -> None:
    result = (
        {**RESULT, "status": status}
        if status
        else {k: v for k, v in RESULT.items() if k != "status"}
    )
    session = t.session_from_kong(result)
    assert (session.status, session.payment_status) == expected
    if expected[0] is not SessionStatus.OPEN:
        assert session.checkout_url is None


def test_minimal_result_with_only_required_fields() -> None:
    required = {
        k: RESULT[k]
        for k in (
            "customer_id",
            "stripe_customer_id",
            "session_id",
            "setup_intent_id",
            "created_at",
            "mode",
        )
    }
    session = t.session_from_kong(required)
    assert session.currency is None
    assert session.status is SessionStatus.OPEN
    assert session.payment_status is PaymentStatus.UNPAID


@pytest.mark.parametrize("missing", ["customer_id", "session_id", "setup_intent_id", "created_at"])
def test_a_result_missing_a_required_field_is_an_error(missing: str) -> None:
    with pytest.raises(ProviderError):
        t.session_from_kong({k: v for k, v in RESULT.items() if k != missing})


def test_create_body() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    body = t.create_body(request(client_reference_id="acct-9", expires_at=when))
    assert body == {
        "stripe_options": {
            "currency": "EUR",
            "ui_mode": "hosted",
            "metadata": {
                "billing_customer_id": CUSTOMER,
                "plan": "pro",
                "orchestrator_session_id": "sess_1",
                "orchestrator_attempt": "2",
            },
            "success_url": "https://app.example/ok",
            "cancel_url": "https://app.example/no",
            "client_reference_id": "acct-9",
            "expires_at": int(when.timestamp()),
        }
    }


def test_embedded_body_sends_only_the_return_url() -> None:
    body = t.create_body(
        request(
            ui_mode="embedded",
            urls=Urls(success_url="https://app.example/ok", return_url="https://app.example/r"),
        )
    )
    options = body["stripe_options"]
    assert options["ui_mode"] == "embedded"
    assert options["return_url"] == "https://app.example/r"
    assert "success_url" not in options


@pytest.mark.parametrize("mode", [Mode.PAYMENT, Mode.SUBSCRIPTION])
def test_only_setup_mode(mode: Mode) -> None:
    with pytest.raises(ProviderRejected, match="setup"):
        t.create_body(request(mode=mode, amount=RequestedAmount(currency="EUR", amount=100)))


def test_customer_id_sources_and_shape() -> None:
    assert t.customer_id_of(request()) == CUSTOMER
    from_customer = request(metadata={}, customer=Customer(provider_customer_id=CUSTOMER))
    assert t.customer_id_of(from_customer) == CUSTOMER
    with pytest.raises(ProviderRejected):
        t.customer_id_of(request(metadata={}))
    with pytest.raises(ProviderRejected, match="ULID"):
        t.customer_id_of(request(metadata={"billing_customer_id": "cus_123"}))
    with pytest.raises(ProviderRejected, match="ULID"):
        t.customer_id_of(request(metadata={"billing_customer_id": "81G65Z755AFWAKHE12NY0CQ9FH"}))


def test_from_stripe_session_names_the_kong_customer() -> None:
    stripe_session = stripe_t.session_from_stripe(
        {
            "id": "cs_test_kong0001",
            "object": "checkout.session",
            "mode": "setup",
            "status": "complete",
            "payment_status": "no_payment_required",
            "currency": "usd",
            "customer": "cus_Kong123",
            "setup_intent": "seti_1Kong",
            "metadata": {"billing_customer_id": CUSTOMER, "orchestrator_session_id": "sess_1"},
            "created": 1700000000,
        }
    )
    session = t.from_stripe_session(stripe_session)
    assert session.provider is Provider.KONG
    assert session.customer.provider_customer_id == CUSTOMER
    assert session.references.customer == "cus_Kong123"
    assert session.status is SessionStatus.COMPLETE
    assert session.session_id == "sess_1"


def test_capabilities_are_setup_only() -> None:
    assert t.capabilities().modes == frozenset({Mode.SETUP})
