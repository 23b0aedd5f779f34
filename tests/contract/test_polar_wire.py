"""Polar's wire, judged by Polar: every checkout, list, error and webhook the simulator emits
against Polar's published OpenAPI (``schemas/polar``, API version 2026-10), every request the
adapter sends against ``CheckoutProductsCreate``/``CheckoutUpdate``, and every object and
webhook through ``polar-sdk``'s own models and signature check.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import polar
import pytest
from polar.v2026_10 import outputs
from polar.v2026_10 import webhooks as sdk_webhooks
from polar.v2026_10.webhooks import validate_event

from events.values import Customer, Mode, RequestedAmount, SessionUrls
from orchestrator.providers.base import OpenRequest, ProviderRejected
from orchestrator.providers.polar.client import API_VERSION, PolarProvider
from orchestrator.sandbox.polar_sim import PolarCatalog, PolarSimulator
from orchestrator.sandbox.simulator import DriveAddress, DriveCustomer, DriveRequest
from tests.contract.recorder import Exchange, Recorder
from tests.contract.schemas import contract

TOKEN = "polar_oat_contract"  # noqa: S105 - the simulator's test token
SECRET = "whsec_contract_polar"  # noqa: S105
API = contract("polar", "checkout")
WEBHOOKS = contract("polar", "webhooks")
_WEBHOOK_ROOTS = {
    "checkout.created": "WebhookCheckoutCreatedPayload",
    "checkout.updated": "WebhookCheckoutUpdatedPayload",
    "checkout.expired": "WebhookCheckoutExpiredPayload",
    "order.paid": "WebhookOrderPaidPayload",
}


@pytest.fixture
async def wire() -> AsyncIterator[tuple[PolarSimulator, list[Exchange]]]:
    log: list[Exchange] = []
    simulator = PolarSimulator(
        access_token=TOKEN,
        webhook_secret=SECRET,
        catalog=PolarCatalog(discounts={"disc_10": 500}, tax_rate_bps=2000),
        subscribed=frozenset(_WEBHOOK_ROOTS),
    )
    simulator.app.add_middleware(Recorder, log=log)
    async with simulator:
        yield simulator, log


@pytest.fixture
async def provider(wire: tuple[PolarSimulator, list[Exchange]]) -> AsyncIterator[PolarProvider]:
    adapter = PolarProvider(wire[0].adapter_config(timeout_seconds=2.0))
    yield adapter
    await adapter.aclose()


def request(session_id: str, **changes: Any) -> OpenRequest:
    fields: dict[str, Any] = {
        "session_id": session_id,
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="USD", amount=2500),
        "customer": Customer(email="ada@example.com"),
        "urls": SessionUrls(success_url="https://shop.example/ok"),
        "metadata": {"order": "42"},
        "client_reference_id": "cart-7",
    }
    return OpenRequest(**(fields | changes))


async def exercise(provider: PolarProvider, sim: PolarSimulator) -> None:
    paid = await provider.open_session(request("p1"))
    await provider.open_session(request("p1"))  # a redelivered open: the lookup finds it
    monthly = await provider.open_session(request("p2", mode=Mode.SUBSCRIPTION))
    delayed = await provider.open_session(request("p3"))
    failed = await provider.open_session(request("p4"))
    expired = await provider.open_session(request("p5"))
    updated = await provider.open_session(request("p6"))
    await provider.api.update_checkout(updated.provider_session_id, {"metadata": {"k": "v"}})
    payer = DriveCustomer(name="Ada", address=DriveAddress(country="FR", city="Paris"))
    await sim.pay(paid.provider_session_id, DriveRequest(customer=payer))
    await sim.pay(monthly.provider_session_id)
    await sim.pay(delayed.provider_session_id, DriveRequest(delayed=True))
    await sim.fail(failed.provider_session_id)
    await sim.expire(expired.provider_session_id)
    for opened in (paid, monthly, delayed, failed, expired):
        await provider.retrieve_session(opened.provider_session_id)
    with pytest.raises(ProviderRejected):
        await provider.retrieve_session("00000000-0000-4000-8000-000000000000")
    with pytest.raises(ProviderRejected):
        await provider.api.create_checkout({"products": ["prod_unknown"]})
    await sim.webhooks.wait_idle()


def check_answer(exchange: Exchange) -> None:
    body = exchange.json()
    if exchange.status == 404:
        API.assert_valid("ResourceNotFound", body)
    elif exchange.status == 422:
        API.assert_valid("HTTPValidationError", body)
        assert isinstance(body["detail"], list)
    elif exchange.status >= 400:
        assert set(body) == {"error", "detail"}, body
    elif exchange.method == "GET" and exchange.path == "/v1/checkouts/":
        API.assert_valid("ListResource_Checkout_", body)
        for item in body["items"]:
            polar.deserialize(item, outputs.Checkout)
    else:
        API.assert_valid("Checkout", body)
        polar.deserialize(body, outputs.Checkout)


async def test_every_answer_has_polars_shape_and_the_sdk_parses_it(
    provider: PolarProvider, wire: tuple[PolarSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    assert {e.status for e in log} >= {200, 201, 404, 422}
    for exchange in log:
        check_answer(exchange)


async def test_every_request_the_adapter_sends_is_one_polar_takes(
    provider: PolarProvider, wire: tuple[PolarSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    for exchange in log:
        assert exchange.headers.get("polar-version") == API_VERSION
        if exchange.method == "POST" and exchange.status != 422:
            API.assert_valid("CheckoutCreate", exchange.request_json())
        if exchange.method == "PATCH":
            API.assert_valid("CheckoutUpdate", exchange.request_json())
        if exchange.status < 400:
            assert exchange.response_headers.get("polar-version") == API_VERSION


async def test_every_webhook_is_polars_envelope_and_the_sdk_verifies_and_parses_it(
    provider: PolarProvider, wire: tuple[PolarSimulator, list[Exchange]]
) -> None:
    sim, _ = wire
    await exercise(provider, sim)
    deliveries = sim.webhooks.deliveries
    assert {d.event_type for d in deliveries} >= {
        "checkout.created",
        "checkout.updated",
        "checkout.expired",
        "order.paid",
    }
    for delivery in deliveries:
        payload = json.loads(delivery.body)
        root = _WEBHOOK_ROOTS[delivery.event_type]
        WEBHOOKS.assert_valid(root, payload)
        polar.deserialize(payload, getattr(sdk_webhooks, root))  # a readable error first
        headers = dict(delivery.sign(delivery.body))
        parsed = validate_event(delivery.body, headers, SECRET)
        assert parsed.type == delivery.event_type


async def test_the_payer_keeps_the_address_given(
    provider: PolarProvider, wire: tuple[PolarSimulator, list[Exchange]]
) -> None:
    sim, _ = wire
    opened = await provider.open_session(request("p1"))
    payer = DriveCustomer(name="Awa", address=DriveAddress(country="SN", city="Dakar"))
    await sim.pay(opened.provider_session_id, DriveRequest(customer=payer))
    checkout = sim.describe(opened.provider_session_id)
    assert checkout["customer_billing_address"]["country"] == "SN"
    assert checkout["customer_billing_address"]["city"] == "Dakar"
    assert checkout["customer_billing_name"] == "Awa"
