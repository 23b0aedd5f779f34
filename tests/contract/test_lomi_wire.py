"""lomi.'s wire, judged by lomi.: every session the simulator answers against
``CheckoutSessionResponseDto`` of lomi's published OpenAPI (``schemas/lomi``), every
create the adapter sends against lomi's create schema, and errors in the shape of lomi's
exception filter.

lomi's generated spec declares no field nullable, while its API answers database rows
in which unset columns are null; so a null passes here where the spec says ``string``
(every required key must still be present). What only a lomi sandbox account can confirm
is listed in docs/providers.md, "Wire contract".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from events.values import Customer, LineItem, Mode, RequestedAmount, SessionUrls
from orchestrator.providers.base import OpenRequest, ProviderRejected
from orchestrator.providers.lomi.client import LomiProvider
from orchestrator.sandbox.lomi_sim import LomiSimulator
from tests.contract.recorder import Exchange, Recorder
from tests.contract.schemas import contract

API_KEY = "lomi_sk_contract"
SCHEMA = contract("lomi", nullable_roots=("CheckoutSessionResponseDto",))
_ERROR_CODES = {"bad_request", "unauthorized", "forbidden", "not_found", "conflict"}
_CREATE_FIELDS = frozenset(SCHEMA.document["roots"]["CheckoutSessionCreate"]["properties"])


@pytest.fixture
async def wire() -> AsyncIterator[tuple[LomiSimulator, list[Exchange]]]:
    log: list[Exchange] = []
    simulator = LomiSimulator(api_key=API_KEY, webhook_secret="lomi_whsec_contract")  # noqa: S106
    simulator.app.add_middleware(Recorder, log=log)
    async with simulator:
        yield simulator, log


@pytest.fixture
async def provider(wire: tuple[LomiSimulator, list[Exchange]]) -> AsyncIterator[LomiProvider]:
    adapter = LomiProvider(wire[0].adapter_config(timeout_seconds=2.0))
    yield adapter
    await adapter.aclose()


def request(session_id: str, **changes: Any) -> OpenRequest:
    fields: dict[str, Any] = {
        "session_id": session_id,
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="XOF", amount=10000),
        "customer": Customer(email="awa@example.sn", name="Awa", phone="+221700000000"),
        "urls": SessionUrls(
            success_url="https://shop.example/ok", cancel_url="https://shop.example/no"
        ),
        "metadata": {"order": "42"},
        "client_reference_id": "cart-7",
    }
    return OpenRequest(**(fields | changes))


async def exercise(provider: LomiProvider, sim: LomiSimulator) -> None:
    basket = RequestedAmount(
        currency="EUR", line_items=(LineItem(name="Tea", quantity=3, unit_amount=250),)
    )
    paid = await provider.open_session(request("l1"))
    await provider.open_session(request("l1"))  # the same key: an idempotent replay
    listed = await provider.open_session(request("l2", amount=basket))
    expired = await provider.open_session(request("l3"))
    await sim.pay(paid.provider_session_id)
    await sim.expire(expired.provider_session_id)
    for opened in (paid, listed, expired):
        await provider.retrieve_session(opened.provider_session_id)
    await provider.api.list_checkout_sessions(status="open")
    with pytest.raises(ProviderRejected):
        await provider.retrieve_session("5b1f0c7e-0000-4000-8000-000000000000")
    async with httpx.AsyncClient(base_url=sim.base_url, headers={"X-API-KEY": API_KEY}) as http:
        await http.post("/checkout-sessions", json={"currency_code": "GBP", "amount": 1})
        await http.post("/checkout-sessions", json={"amount": "many"})
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        await http.get("/checkout-sessions")


def check_answer(exchange: Exchange) -> None:
    body = exchange.json()
    if exchange.status >= 400:
        assert set(body) == {"error", "request_id"}, body
        assert set(body["error"]) == {"code", "message", "details"}, body
        assert body["error"]["code"] in _ERROR_CODES, body
        return
    for session in body if isinstance(body, list) else [body]:
        SCHEMA.assert_valid("CheckoutSessionResponseDto", session)


async def test_every_answer_has_lomis_shape(
    provider: LomiProvider, wire: tuple[LomiSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    assert {e.status for e in log} >= {200, 201, 400, 401, 404}
    assert any(isinstance(e.json(), list) for e in log if e.method == "GET")
    for exchange in log:
        check_answer(exchange)


async def test_every_create_the_adapter_sends_is_one_lomi_reads(
    provider: LomiProvider, wire: tuple[LomiSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    await exercise(provider, sim)
    creates = [e for e in log if e.method == "POST" and e.headers.get("idempotency-key")]
    assert creates
    for exchange in creates:
        SCHEMA.assert_valid("CheckoutSessionCreate", exchange.request_json())


async def test_the_adapter_sends_no_field_lomi_ignores(
    provider: LomiProvider, wire: tuple[LomiSimulator, list[Exchange]]
) -> None:
    sim, log = wire
    expires = datetime.fromtimestamp(sim.clock(), UTC) + timedelta(minutes=30)
    await provider.open_session(request("l1", expires_at=expires))
    sent = {key for e in log if e.method == "POST" for key in e.request_json()}
    assert sent <= _CREATE_FIELDS, sorted(sent - _CREATE_FIELDS)


async def test_lomis_own_sixty_minutes_whatever_expiry_is_sent(
    wire: tuple[LomiSimulator, list[Exchange]],
) -> None:
    sim, _ = wire
    body = {
        "currency_code": "XOF",
        "amount": 5000,
        "customer_email": "awa@example.sn",
        "expires_at": "2030-01-01T00:00:00Z",
        "allowed_providers": ["WAVE"],
    }
    async with httpx.AsyncClient(base_url=sim.base_url, headers={"X-API-KEY": API_KEY}) as http:
        created = (await http.post("/checkout-sessions", json=body)).json()
    assert sim.ignored_fields == ["allowed_providers", "expires_at"]
    assert "allowed_providers" not in created
    assert created["expires_at"] != "2030-01-01T00:00:00Z"
