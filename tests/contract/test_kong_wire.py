"""Kong Konnect / OpenMeter billing's wire, judged by OpenMeter: every request the adapter
sends against ``BillingCustomerStripeCreateCheckoutSessionRequest`` and every answer against
``BillingAppStripeCreateCheckoutSessionResult`` or the problem responses of OpenMeter's
``api/v3/openapi.yaml`` (``schemas/kong``); refusals and metadata placement as OpenMeter's
server code does them (``openmeter/app/stripe/client/checkout.go``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from events.values import Mode, RequestedAmount
from events.values import SessionUrls as Urls
from orchestrator.providers.base import OpenRequest, ProviderRejected
from orchestrator.providers.kong.client import KongProvider
from orchestrator.sandbox.kong_sim import KongSimulator
from orchestrator.sandbox.stripe_sim import StripeSimulator
from tests.contract.recorder import Exchange, Recorder
from tests.contract.schemas import contract

TOKEN = "kpat_contract"  # noqa: S105 - the simulator's test token
CUSTOMER = "01G65Z755AFWAKHE12NY0CQ9FH"
SCHEMA = contract("kong")
_PROBLEMS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound", 410: "Gone"}


@pytest.fixture
async def wire() -> AsyncIterator[tuple[KongSimulator, list[Exchange]]]:
    log: list[Exchange] = []
    async with StripeSimulator() as stripe_sim:
        simulator = KongSimulator(stripe_sim, token=TOKEN)
        simulator.app.add_middleware(Recorder, log=log)
        async with simulator:
            simulator.add_customer(CUSTOMER, email="billing@acme.example")
            yield simulator, log


@pytest.fixture
async def provider(wire: tuple[KongSimulator, list[Exchange]]) -> AsyncIterator[KongProvider]:
    adapter = KongProvider(wire[0].adapter_config(timeout_seconds=2.0))
    yield adapter
    await adapter.aclose()


def setup_request(session_id: str, **changes: Any) -> OpenRequest:
    values: dict[str, Any] = {
        "session_id": session_id,
        "attempt": 1,
        "mode": Mode.SETUP,
        "amount": RequestedAmount(currency="USD"),
        "metadata": {"billing_customer_id": CUSTOMER},
        "urls": Urls(success_url="https://app.example/ok", cancel_url="https://app.example/no"),
        "client_reference_id": "acct-9",
        **changes,
    }
    return OpenRequest(**values)


async def exercise(provider: KongProvider, sim: KongSimulator) -> None:
    hosted = await provider.open_session(setup_request("k1"))
    await provider.open_session(
        setup_request("k2", ui_mode="embedded", urls=Urls(return_url="https://app.example/r"))
    )
    await sim.pay(hosted.provider_session_id)
    await provider.retrieve_session(hosted.provider_session_id)
    with pytest.raises(ProviderRejected):
        await provider.open_session(setup_request("k3", urls=Urls()))  # hosted, no success_url
    sim.add_customer("01G65Z755AFWAKHE12NY0CQ9FZ")
    sim.delete_customer("01G65Z755AFWAKHE12NY0CQ9FZ")
    path = "/v3/openmeter/customers/{}/billing/stripe/checkout-sessions"
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        body = {"stripe_options": {"success_url": "https://app.example/ok"}}
        await http.post(path.format(CUSTOMER), json=body)  # no token: 401
        await http.post(path.format("01G65Z755AFWAKHE12NY0CQ9FZ"), json=body, headers=bearer)
        sim.auto_create_customers = False
        await http.post(path.format("01G65Z755AFWAKHE12NY0CQ9FX"), json=body, headers=bearer)


async def test_every_answer_has_openmeters_shape(
    provider: KongProvider, wire: tuple[KongSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    assert {e.status for e in log} == {201, 400, 401, 404, 410}
    for exchange in log:
        body = exchange.json()
        if exchange.status == 201:
            SCHEMA.assert_valid("CreateCheckoutSessionResult", body)
        else:
            assert exchange.response_headers["content-type"] == "application/problem+json"
            SCHEMA.assert_valid(_PROBLEMS[exchange.status], body)


async def test_every_request_the_adapter_sends_is_one_openmeter_takes(
    provider: KongProvider, wire: tuple[KongSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    sent = [e for e in log if e.headers.get("idempotency-key")]
    assert len(sent) == 3
    for exchange in sent:
        SCHEMA.assert_valid("CreateCheckoutSessionRequest", exchange.request_json())


async def test_hosted_without_success_url_is_refused_in_openmeters_words(
    wire: tuple[KongSimulator, list[Exchange]],
) -> None:
    sim, _ = wire
    path = f"/v3/openmeter/customers/{CUSTOMER}/billing/stripe/checkout-sessions"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=bearer) as http:
        hosted = await http.post(path, json={"stripe_options": {"ui_mode": "hosted"}})
        embedded = await http.post(
            path,
            json={"stripe_options": {"ui_mode": "embedded", "cancel_url": "https://a.example"}},
        )
        reserved = await http.post(
            path,
            json={
                "stripe_options": {
                    "success_url": "https://a.example",
                    "metadata": {"om_customer_id": "x"},
                }
            },
        )
    assert hosted.status_code == embedded.status_code == reserved.status_code == 400
    assert hosted.json()["detail"] == "success url is required for hosted ui mode"
    assert embedded.json()["detail"] == "cancel url is not allowed for embedded ui mode"
    assert reserved.json()["detail"] == "metadata key om_customer_id is reserved"
    assert sim.stats()["sessions_created"] == 0


async def test_metadata_goes_on_the_setup_intent_not_the_session(
    provider: KongProvider, wire: tuple[KongSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    opened = await provider.open_session(setup_request("k1"))
    assert log[-1].json()["metadata"] == {}
    stripe_session = sim.stripe.describe(opened.provider_session_id)
    assert stripe_session["metadata"] == {}
    intent = sim.stripe.setup_intents[stripe_session["setup_intent"]]
    assert intent["metadata"]["orchestrator_session_id"] == "k1"
    assert intent["metadata"]["om_customer_id"] == CUSTOMER
    assert opened.session_id == "k1"  # from our request: the answer cannot name it
    read_back = await provider.retrieve_session(opened.provider_session_id)
    assert read_back.session_id == "k1"  # from the SetupIntent, expanded
    assert read_back.customer.provider_customer_id == CUSTOMER
