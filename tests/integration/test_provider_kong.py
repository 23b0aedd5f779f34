"""The Kong billing adapter against the Kong simulator (over a Stripe simulator), over HTTP.

What every provider does (idempotent open, 5xx/timeout/refused connection, wrong
credential, unknown session, forged/redelivered/dropped webhooks) is proved once for all
in tests/integration/providers/test_contract.py; this file keeps what is Kong's own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Request
from pydantic import SecretStr
from starlette.responses import Response

from events.values import Customer, Mode, PaymentStatus, Provider, RequestedAmount, SessionStatus
from events.values import SessionUrls as Urls
from orchestrator.http.server import HttpServer
from orchestrator.providers.base import (
    OpenRequest,
    ProviderRejected,
    UnsupportedOperation,
    WebhookRejected,
)
from orchestrator.providers.kong.client import KongConfig, KongProvider
from orchestrator.providers.stripe.client import StripeConfig
from orchestrator.sandbox.kong_sim import KongSimulator
from orchestrator.sandbox.stripe_sim import StripeSimulator

TOKEN = "kpat_test_token"  # noqa: S105 - the simulator's test token
CUSTOMER = "01G65Z755AFWAKHE12NY0CQ9FH"


class StripeInbox:
    def __init__(self) -> None:
        self.types: list[str] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            self.types.append(json.loads(await request.body())["type"])
            return Response(status_code=200)


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[StripeInbox, str]]:
    box = StripeInbox()
    async with HttpServer(box.app) as server:
        yield box, f"{server.base_url}/hook"


@pytest.fixture
async def stripe_sim(inbox: tuple[StripeInbox, str]) -> AsyncIterator[StripeSimulator]:
    async with StripeSimulator(webhook_url=inbox[1]) as simulator:
        yield simulator


@pytest.fixture
async def kong(stripe_sim: StripeSimulator) -> AsyncIterator[KongSimulator]:
    async with KongSimulator(stripe_sim, token=TOKEN) as simulator:
        simulator.add_customer(CUSTOMER, email="billing@acme.example")
        yield simulator


def config(kong: KongSimulator, *, with_stripe: bool = True, **changes: Any) -> KongConfig:
    stripe = StripeConfig(
        api_key=SecretStr(kong.stripe.api_key),
        webhook_secret=SecretStr(kong.stripe.webhook_secret),
        api_base=kong.stripe.base_url,
        max_network_retries=0,
    )
    values: dict[str, Any] = {
        "token": SecretStr(TOKEN),
        "base_url": kong.base_url,
        "timeout_seconds": 2.0,
        "stripe": stripe if with_stripe else None,
        **changes,
    }
    return KongConfig(**values)


@pytest.fixture
async def provider(kong: KongSimulator) -> AsyncIterator[KongProvider]:
    adapter = KongProvider(config(kong))
    yield adapter
    await adapter.aclose()


def setup_request(session_id: str = "sess_k1", attempt: int = 1, **changes: Any) -> OpenRequest:
    values: dict[str, Any] = {
        "session_id": session_id,
        "attempt": attempt,
        "mode": Mode.SETUP,
        "amount": RequestedAmount(currency="USD"),
        "metadata": {"billing_customer_id": CUSTOMER},
        "urls": Urls(success_url="https://app.example/ok", cancel_url="https://app.example/no"),
        "client_reference_id": "acct-9",
        **changes,
    }
    return OpenRequest(**values)


# --- open -------------------------------------------------------------------------------------


async def test_open_setup_session(
    provider: KongProvider, kong: KongSimulator, stripe_sim: StripeSimulator
) -> None:
    session = await provider.open_session(setup_request())
    assert session.provider is Provider.KONG
    assert session.mode is Mode.SETUP
    assert session.amounts is None
    assert session.currency == "USD"
    assert session.status is SessionStatus.OPEN
    assert session.payment_status is PaymentStatus.NO_PAYMENT_REQUIRED
    assert session.session_id == "sess_k1"
    assert session.customer.provider_customer_id == CUSTOMER
    assert session.customer.email == "billing@acme.example"
    assert session.references.customer == kong.customers[CUSTOMER]["stripe_customer_id"]
    assert session.references.setup_intent is not None
    assert session.checkout_url == f"{stripe_sim.base_url}/c/pay/{session.provider_session_id}"
    assert session.client_reference_id == "acct-9"
    assert session.created_at is not None
    assert kong.stats()["sessions_created"] == 1
    underlying = stripe_sim.describe(session.provider_session_id)
    assert (underlying["mode"], underlying["currency"]) == ("setup", "usd")
    # OpenMeter puts the metadata on the SetupIntent, not on the Checkout Session
    assert underlying["metadata"] == {}
    intent = stripe_sim.setup_intents[underlying["setup_intent"]]
    assert intent["metadata"]["billing_customer_id"] == CUSTOMER
    assert intent["metadata"]["om_customer_id"] == CUSTOMER


async def test_customer_id_from_the_customer(provider: KongProvider) -> None:
    request = setup_request(metadata={}, customer=Customer(provider_customer_id=CUSTOMER))
    session = await provider.open_session(request)
    assert session.customer.provider_customer_id == CUSTOMER


async def test_embedded_setup_session(provider: KongProvider) -> None:
    session = await provider.open_session(
        setup_request(ui_mode="embedded", urls=Urls(return_url="https://app.example/back"))
    )
    assert session.checkout_url is None
    assert session.client_secret is not None
    assert session.client_secret.get_secret_value().startswith(session.provider_session_id)
    assert "client_secret" not in session.raw


@pytest.mark.parametrize(
    "request_",
    [
        setup_request(mode=Mode.PAYMENT, amount=RequestedAmount(currency="USD", amount=500)),
        setup_request(mode=Mode.SUBSCRIPTION, amount=RequestedAmount(currency="USD", amount=500)),
        setup_request(metadata={}),
        setup_request(metadata={"billing_customer_id": "cus_not_a_ulid"}),
        setup_request(amount=RequestedAmount(currency="IQD")),
    ],
    ids=["payment", "subscription", "no-customer", "not-a-ulid", "currency"],
)
async def test_rejected_before_any_call(
    provider: KongProvider, kong: KongSimulator, request_: OpenRequest
) -> None:
    with pytest.raises(ProviderRejected):
        await provider.open_session(request_)
    assert kong.all_stats()["api_requests"] == 0


async def test_self_hosted_openmeter_path(kong: KongSimulator) -> None:
    adapter = KongProvider(config(kong, base_url=f"{kong.base_url}/api"))
    try:
        session = await adapter.open_session(setup_request())
    finally:
        await adapter.aclose()
    assert session.status is SessionStatus.OPEN


# --- pay, fail, expire, retrieve (polled through Stripe) -------------------------------------


async def test_pay_then_poll_sees_complete(
    provider: KongProvider, kong: KongSimulator, inbox: tuple[StripeInbox, str]
) -> None:
    opened = await provider.open_session(setup_request())
    driven = await kong.pay(opened.provider_session_id)
    assert driven.session["status"] == "complete"
    session = await provider.retrieve_session(opened.provider_session_id)
    assert session.provider is Provider.KONG
    assert session.status is SessionStatus.COMPLETE
    assert session.payment_status is PaymentStatus.NO_PAYMENT_REQUIRED
    assert session.customer.provider_customer_id == CUSTOMER
    assert session.session_id == "sess_k1"
    assert inbox[0].types == ["checkout.session.completed"]  # Stripe's, not Kong's


async def test_fail_is_seen_by_stripe_webhooks_only(
    provider: KongProvider, kong: KongSimulator, inbox: tuple[StripeInbox, str]
) -> None:
    opened = await provider.open_session(setup_request())
    await kong.fail(opened.provider_session_id)
    assert inbox[0].types == ["checkout.session.completed", "checkout.session.async_payment_failed"]
    session = await provider.retrieve_session(opened.provider_session_id)
    assert session.status is SessionStatus.COMPLETE  # a setup session stays complete


async def test_expire_through_stripe(provider: KongProvider) -> None:
    opened = await provider.open_session(setup_request())
    expired = await provider.expire_session(opened.provider_session_id)
    assert expired.provider is Provider.KONG
    assert expired.status is SessionStatus.EXPIRED
    assert expired.checkout_url is None
    with pytest.raises(ProviderRejected) as again:
        await provider.expire_session(opened.provider_session_id)
    assert again.value.provider is Provider.KONG
    assert again.value.details["http_status"] == 400


async def test_expire_driven_by_the_simulator(provider: KongProvider, kong: KongSimulator) -> None:
    opened = await provider.open_session(setup_request())
    await kong.expire(opened.provider_session_id)
    assert kong.describe(opened.provider_session_id)["status"] == "expired"
    polled = await provider.retrieve_session(opened.provider_session_id)
    assert polled.status is SessionStatus.EXPIRED


async def test_without_stripe_there_is_no_retrieve_nor_expire(kong: KongSimulator) -> None:
    adapter = KongProvider(config(kong, with_stripe=False))
    try:
        opened = await adapter.open_session(setup_request())
        again = await adapter.open_session(setup_request())
        with pytest.raises(UnsupportedOperation):
            await adapter.retrieve_session(opened.provider_session_id)
        with pytest.raises(UnsupportedOperation):
            await adapter.expire_session(opened.provider_session_id)
    finally:
        await adapter.aclose()
    assert again.provider_session_id == opened.provider_session_id
    assert kong.stats()["sessions_created"] == 1


# --- errors and faults ------------------------------------------------------------------------


async def test_unknown_customer_is_404(kong: KongSimulator, provider: KongProvider) -> None:
    kong.auto_create_customers = False
    with pytest.raises(ProviderRejected) as caught:
        await provider.open_session(
            setup_request(metadata={"billing_customer_id": "01" + "A" * 24})
        )
    assert caught.value.details["http_status"] == 404


async def test_deleted_customer_is_410(kong: KongSimulator, provider: KongProvider) -> None:
    kong.delete_customer(CUSTOMER)
    with pytest.raises(ProviderRejected) as caught:
        await provider.open_session(setup_request())
    assert caught.value.details["http_status"] == 410


async def test_stripe_refusal_is_a_400(provider: KongProvider) -> None:
    too_soon = datetime.now(UTC) + timedelta(minutes=5)  # Stripe wants 30 min .. 24 h
    with pytest.raises(ProviderRejected) as caught:
        await provider.open_session(setup_request(expires_at=too_soon))
    assert caught.value.details["http_status"] == 400
    assert "expires_at" in str(caught.value)


async def test_kong_sends_no_webhooks(provider: KongProvider) -> None:
    with pytest.raises(WebhookRejected, match="kong sends no webhooks"):
        provider.verify_webhook({"X-Anything": "1"}, b"{}", datetime.now(UTC))


async def test_adapter_config_points_the_adapter_at_both_simulators(kong: KongSimulator) -> None:
    adapter = KongProvider(kong.adapter_config())
    try:
        opened = await adapter.open_session(setup_request())
        polled = await adapter.retrieve_session(opened.provider_session_id)
    finally:
        await adapter.aclose()
    assert polled.status is SessionStatus.OPEN
