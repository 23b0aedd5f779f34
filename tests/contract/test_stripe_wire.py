"""Stripe's wire, judged by Stripe: the simulator's answers and webhooks against the shapes
Stripe publishes (``schemas/stripe``), the adapter's requests against the SDK's parameter
types, every object through the ``stripe`` SDK, and errors only with documented codes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import stripe
from pydantic import SecretStr
from stripe.params.checkout import (
    SessionCreateParams,
    SessionExpireParams,
    SessionListLineItemsParams,
    SessionListParams,
    SessionRetrieveParams,
    SessionUpdateParams,
)

from events.values import LineItem, Mode, RequestedAmount, SessionUrls
from orchestrator.providers.base import OpenRequest, ProviderRejected
from orchestrator.providers.stripe.client import FormBodyHTTPXClient, StripeConfig, StripeProvider
from orchestrator.sandbox.simulator import DriveRequest
from orchestrator.sandbox.stripe_sim import StripeSimulator, parse_form
from tests.contract.recorder import Exchange, Recorder
from tests.contract.schemas import contract
from tests.contract.stripe_sdk import documented_error_codes, param_errors

API_KEY = "sk_test_contract"
SCHEMA = contract("stripe")


@pytest.fixture
async def wire() -> AsyncIterator[tuple[StripeSimulator, list[Exchange]]]:
    log: list[Exchange] = []
    simulator = StripeSimulator(api_key=API_KEY, webhook_secret="whsec_contract")  # noqa: S106
    simulator.app.add_middleware(Recorder, log=log)
    simulator.add_price(
        "price_monthly", unit_amount=900, currency="eur", name="Plan", interval="month"
    )
    async with simulator:
        yield simulator, log


@pytest.fixture
async def provider(wire: tuple[StripeSimulator, list[Exchange]]) -> AsyncIterator[StripeProvider]:
    adapter = StripeProvider(
        StripeConfig(
            api_key=SecretStr(API_KEY),
            webhook_secret=SecretStr("whsec_contract"),
            api_base=wire[0].base_url,
            max_network_retries=0,
        )
    )
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def sdk(wire: tuple[StripeSimulator, list[Exchange]]) -> AsyncIterator[stripe.StripeClient]:
    http = FormBodyHTTPXClient()
    yield stripe.StripeClient(
        API_KEY, base_addresses={"api": wire[0].base_url}, http_client=http, max_network_retries=0
    )
    await http.close_async()  # type: ignore[no-untyped-call]


def payment(session_id: str, **changes: Any) -> OpenRequest:
    values: dict[str, Any] = {
        "session_id": session_id,
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(
            currency="EUR", line_items=(LineItem(name="Tea", quantity=2, unit_amount=450),)
        ),
        "urls": SessionUrls(
            success_url="https://shop.example/ok", cancel_url="https://shop.example/no"
        ),
        "client_reference_id": f"order-{session_id}",
        **changes,
    }
    return OpenRequest(**values)


async def exercise(provider: StripeProvider, sim: StripeSimulator) -> list[str]:
    """Every kind of request the adapter makes and every drive the simulator has."""
    hosted = await provider.open_session(payment("s1"))
    embedded = await provider.open_session(
        payment("s2", ui_mode="embedded", urls=SessionUrls(return_url="https://shop.example/r"))
    )
    setup = await provider.open_session(
        payment("s3", mode=Mode.SETUP, amount=RequestedAmount(currency="USD"))
    )
    delayed = await provider.open_session(payment("s4"))
    failing = await provider.open_session(payment("s5"))
    expiring = await provider.open_session(payment("s6"))
    ids = [s.provider_session_id for s in (hosted, embedded, setup, delayed, failing, expiring)]
    await sim.pay(ids[0])
    await sim.pay(ids[2])
    await sim.pay(ids[3], DriveRequest(delayed=True))
    await sim.pay(ids[3])
    await sim.fail(ids[4])
    await sim.expire(ids[5])
    await provider.expire_session(ids[1])
    await sim.webhooks.wait_idle()
    for provider_session_id in ids:
        await provider.retrieve_session(provider_session_id)
    with pytest.raises(ProviderRejected):
        await provider.expire_session(ids[0])  # complete: Stripe refuses
    with pytest.raises(ProviderRejected):
        await provider.retrieve_session("cs_test_unknown")
    return ids


_PARAMS = {
    ("POST", "/v1/checkout/sessions"): SessionCreateParams,
    ("GET", "/v1/checkout/sessions"): SessionListParams,
}


def _params_type(exchange: Exchange) -> type:
    found = _PARAMS.get((exchange.method, exchange.path))
    if found is not None:
        return found
    if exchange.path.endswith("/expire"):
        return SessionExpireParams
    if exchange.path.endswith("/line_items"):
        return SessionListLineItemsParams
    return SessionRetrieveParams if exchange.method == "GET" else SessionUpdateParams


def _params(exchange: Exchange) -> dict[str, Any]:
    raw = exchange.body.decode() if exchange.method == "POST" else exchange.query
    return parse_form(parse_qsl(raw, keep_blank_values=True))


def check_answer(exchange: Exchange) -> None:
    body = exchange.json()
    if exchange.status >= 400:
        error = body["error"]
        assert set(error) <= {"type", "message", "code", "param", "doc_url", "decline_code"}
        assert error["type"] in {"api_error", "idempotency_error", "invalid_request_error"}
        assert error.get("code") is None or error["code"] in documented_error_codes(), error
        return
    sessions = body["data"] if body.get("object") == "list" else [body]
    for session in sessions:
        if session["object"] == "item":
            SCHEMA.assert_valid("item", session)
            SCHEMA.assert_valid("price", session["price"])
            continue
        SCHEMA.assert_valid("checkout.session", session)
        assert isinstance(stripe.convert_to_stripe_object(session), stripe.checkout.Session)
        for item in (session.get("line_items") or {}).get("data", []):
            SCHEMA.assert_valid("item", item)
            SCHEMA.assert_valid("price", item["price"])


async def test_every_answer_has_stripes_shape(
    provider: StripeProvider, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    assert {e.status for e in log} >= {200, 400, 404}
    for exchange in log:
        check_answer(exchange)


async def test_every_request_the_adapter_sends_is_one_stripe_takes(
    provider: StripeProvider, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    assert log
    for exchange in log:
        problems = param_errors(_params(exchange), _params_type(exchange))
        assert not problems, f"{exchange.method} {exchange.path}: {problems}"


async def test_every_webhook_is_a_stripe_event_the_sdk_parses(
    provider: StripeProvider, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, _ = wire
    await exercise(provider, sim)
    deliveries = sim.webhooks.deliveries
    assert {d.event_type for d in deliveries} == {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
    for delivery in deliveries:
        event = json.loads(delivery.body)
        SCHEMA.assert_valid("event", event)
        SCHEMA.assert_valid("checkout.session", event["data"]["object"])
        parsed = stripe.Event.construct_from(event, API_KEY)
        assert isinstance(parsed.data.object, stripe.checkout.Session)


async def test_the_sdk_reads_list_line_items_update_and_expand(
    provider: StripeProvider,
    sdk: stripe.StripeClient,
    wire: tuple[StripeSimulator, list[Exchange]],
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    sessions = sdk.v1.checkout.sessions
    listed = await sessions.list_async({"limit": 3, "expand": ["data.line_items"]})
    assert len(listed.data) == 3
    assert all(s.line_items is not None for s in listed.data if s.mode != "setup")
    first = listed.data[-1].id
    items = await sessions.line_items.list_async(first, {"limit": 1})
    assert items.data[0].price is not None
    assert items.data[0].price.billing_scheme == "per_unit"
    opened = await sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": "price_monthly", "quantity": 1}],
            "success_url": "https://shop.example/ok",
            "metadata": {"a": "1"},
            "expand": ["line_items"],
        }
    )
    assert opened.line_items is not None
    assert opened.line_items.data[0].price is not None
    assert opened.line_items.data[0].price.recurring is not None
    updated = await sessions.update_async(opened.id, {"metadata": {"b": "2"}})
    assert updated.metadata is not None
    assert updated.metadata.to_dict() == {"a": "1", "b": "2"}
    for exchange in log:
        check_answer(exchange)
        assert not param_errors(_params(exchange), _params_type(exchange))


async def test_a_refused_create_does_not_burn_its_idempotency_key(
    sdk: stripe.StripeClient, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    sessions = sdk.v1.checkout.sessions
    options = {"idempotency_key": "contract-key-1"}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        await sessions.create_async({"success_url": "https://shop.example/ok"}, options)  # type: ignore[arg-type]
    assert refused.value.code == "parameter_missing"
    created = await sessions.create_async(
        {
            "mode": "subscription",
            "line_items": [{"price": "price_monthly", "quantity": 1}],
            "success_url": "https://shop.example/ok",
        },
        options,  # type: ignore[arg-type]
    )
    assert created.status == "open"
    assert sim.stats()["sessions_created"] == 1
    for exchange in log:
        check_answer(exchange)


async def test_expire_of_a_closed_session_sends_no_invented_code(
    provider: StripeProvider, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    opened = await provider.open_session(payment("s1"))
    await sim.pay(opened.provider_session_id)
    with pytest.raises(ProviderRejected):
        await provider.expire_session(opened.provider_session_id)
    error = log[-1].json()["error"]
    assert log[-1].status == 400
    assert error["type"] == "invalid_request_error"
    assert "code" not in error


async def test_optional_fields_are_omitted_not_null(
    provider: StripeProvider, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, _ = wire
    hosted = await provider.open_session(payment("s1"))
    raw = sim.describe(hosted.provider_session_id)
    assert "redirect_on_completion" not in raw
    assert "return_url" not in raw
    embedded = await provider.open_session(
        payment("s2", ui_mode="embedded", urls=SessionUrls(return_url="https://shop.example/r"))
    )
    raw = sim.describe(embedded.provider_session_id)
    assert raw["redirect_on_completion"] == "always"
    assert raw["return_url"] == "https://shop.example/r"


async def test_customers_keep_the_address_they_gave(
    provider: StripeProvider, wire: tuple[StripeSimulator, list[Exchange]]
) -> None:
    sim, _ = wire
    address = {"country": "SN", "city": "Dakar", "line1": "1 Rue X", "postal_code": "10200"}
    first = await provider.open_session(payment("s1"))
    second = await provider.open_session(payment("s2"))
    await sim.pay(
        first.provider_session_id,
        DriveRequest(customer={"name": "Awa", "email": "awa@example.sn", "address": address}),
    )
    await sim.pay(second.provider_session_id)
    paid = sim.describe(first.provider_session_id)["customer_details"]
    assert (paid["name"], paid["email"]) == ("Awa", "awa@example.sn")
    assert paid["address"] == {"line2": None, "state": None, **address}
    other = sim.describe(second.provider_session_id)["customer_details"]["address"]
    assert other != paid["address"]
    SCHEMA.assert_valid("checkout.session", sim.describe(first.provider_session_id))
