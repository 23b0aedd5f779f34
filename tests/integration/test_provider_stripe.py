"""The Stripe adapter against the Stripe simulator over real HTTP, through the real SDK.

What every provider does (idempotent open, 5xx/timeout/refused connection, wrong
credential, unknown session, forged/redelivered/dropped webhooks) is proved once for all
in tests/integration/providers/test_contract.py; this file keeps what is Stripe's own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from fastapi import FastAPI, Request
from pydantic import SecretStr
from starlette.responses import Response

from events.values import LineItem, Mode, PaymentStatus, RequestedAmount, SessionStatus, SessionUrls
from orchestrator.http.server import HttpServer
from orchestrator.providers.base import (
    OpenRequest,
    ProviderRejected,
    WebhookEvent,
    WebhookRejected,
)
from orchestrator.providers.stripe.client import FormBodyHTTPXClient, StripeConfig, StripeProvider
from orchestrator.sandbox.simulator import DriveRequest
from orchestrator.sandbox.stripe_sim import StripeSimulator

API_KEY = "sk_test_sandbox"
WEBHOOK_SECRET = "whsec_test_secret"  # noqa: S105 - the simulator's test secret


class Inbox:
    """A webhook endpoint recording what arrives."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.post("/webhooks/stripe")
        async def receive(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            return Response(status_code=200)

    def types(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.received]


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[Inbox, str]]:
    box = Inbox()
    async with HttpServer(box.app) as server:
        yield box, f"{server.base_url}/webhooks/stripe"


@pytest.fixture
async def sim(inbox: tuple[Inbox, str]) -> AsyncIterator[StripeSimulator]:
    async with StripeSimulator(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, webhook_url=inbox[1]
    ) as simulator:
        yield simulator


def config(sim: StripeSimulator, **changes: Any) -> StripeConfig:
    values: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "webhook_secret": SecretStr(WEBHOOK_SECRET),
        "api_base": sim.base_url,
        "max_network_retries": 0,
        "timeout_seconds": 2.0,
        **changes,
    }
    return StripeConfig(**values)


@pytest.fixture
async def provider(sim: StripeSimulator) -> AsyncIterator[StripeProvider]:
    adapter = StripeProvider(config(sim))
    yield adapter
    await adapter.aclose()


@pytest.fixture
async def sdk(sim: StripeSimulator) -> AsyncIterator[stripe.StripeClient]:
    http = FormBodyHTTPXClient()
    yield stripe.StripeClient(
        API_KEY, base_addresses={"api": sim.base_url}, http_client=http, max_network_retries=0
    )
    await http.close_async()  # type: ignore[no-untyped-call]


def open_request(session_id: str = "sess_1", attempt: int = 1, **changes: Any) -> OpenRequest:
    values: dict[str, Any] = {
        "session_id": session_id,
        "attempt": attempt,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(
            currency="EUR",
            line_items=(
                LineItem(name="Tea", quantity=2, unit_amount=450),
                LineItem(name="Pot", quantity=1, unit_amount=2900),
            ),
        ),
        "urls": SessionUrls(
            success_url="https://shop.example/ok?cs={CHECKOUT_SESSION_ID}",
            cancel_url="https://shop.example/cancel",
        ),
        "client_reference_id": "order-42",
        **changes,
    }
    return OpenRequest(**values)


def verify_all(provider: StripeProvider, box: Inbox) -> list[WebhookEvent]:
    now = datetime.now(UTC)
    return [provider.verify_webhook(headers, body, now) for headers, body in box.received]


# --- open, idempotency, retrieve --------------------------------------------------------------


async def test_open_hosted_session(provider: StripeProvider, sim: StripeSimulator) -> None:
    session = await provider.open_session(open_request())
    assert session.provider_session_id.startswith("cs_test_")
    assert session.session_id == "sess_1"
    assert session.status is SessionStatus.OPEN
    assert session.payment_status is PaymentStatus.UNPAID
    assert session.currency == "EUR"
    assert session.amounts is not None
    assert (session.amounts.subtotal, session.amounts.total) == (3800, 3800)
    assert session.checkout_url == f"{sim.base_url}/c/pay/{session.provider_session_id}"
    assert session.client_secret is None
    assert session.client_reference_id == "order-42"
    assert sim.stats()["sessions_created"] == 1


async def test_stats_over_http_prove_one_creation(
    provider: StripeProvider, sim: StripeSimulator
) -> None:
    await asyncio.gather(*(provider.open_session(open_request()) for _ in range(3)))
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        stats = (await client.get("/_sim/stats")).json()
    assert stats["sessions_created"] == 1


async def test_retrieve_expands_line_items(provider: StripeProvider) -> None:
    opened = await provider.open_session(open_request())
    session = await provider.retrieve_session(opened.provider_session_id)
    assert [(i.name, i.quantity, i.unit_amount, i.currency) for i in session.line_items] == [
        ("Tea", 2, 450, "EUR"),
        ("Pot", 1, 2900, "EUR"),
    ]


async def test_embedded_session_carries_a_secret_client_secret(provider: StripeProvider) -> None:
    session = await provider.open_session(
        open_request(ui_mode="embedded", urls=SessionUrls(return_url="https://shop.example/r"))
    )
    assert session.checkout_url is None
    assert session.client_secret is not None
    assert session.client_secret.get_secret_value().startswith(session.provider_session_id)
    assert "client_secret" not in session.raw
    assert session.raw["ui_mode"] == "embedded_page"


async def test_setup_session(provider: StripeProvider) -> None:
    session = await provider.open_session(
        open_request(mode=Mode.SETUP, amount=RequestedAmount(currency="USD"))
    )
    assert session.mode is Mode.SETUP
    assert session.amounts is None
    assert session.payment_status is PaymentStatus.NO_PAYMENT_REQUIRED
    assert session.references.setup_intent is not None


async def test_special_currencies_round_trip(
    provider: StripeProvider, sim: StripeSimulator
) -> None:
    isk = await provider.open_session(
        open_request(amount=RequestedAmount(currency="ISK", amount=990))
    )
    assert sim.line_items[isk.provider_session_id][0]["price"]["unit_amount"] == 99000
    assert isk.amounts is not None
    assert isk.amounts.total == 990
    mga = await provider.open_session(
        open_request("sess_2", amount=RequestedAmount(currency="MGA", amount=500000))
    )
    assert sim.line_items[mga.provider_session_id][0]["price"]["unit_amount"] == 5000
    assert mga.amounts is not None
    assert mga.amounts.total == 500000


async def test_a_rejected_request_never_reaches_stripe(
    provider: StripeProvider, sim: StripeSimulator
) -> None:
    with pytest.raises(ProviderRejected):
        await provider.open_session(
            open_request(amount=RequestedAmount(currency="KWD", amount=1235))
        )
    assert sim.all_stats()["api_requests"] == 0


# --- pay, fail, expire ------------------------------------------------------------------------


async def test_pay_sends_completed_and_retrieve_sees_paid(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    result = await sim.pay(opened.provider_session_id)
    assert [w["state"] for w in result.webhooks] == ["delivered"]
    [event] = verify_all(provider, box)
    assert event.kind == "completed"
    assert event.provider_session_id == opened.provider_session_id
    assert event.session is not None
    assert event.session.session_id == "sess_1"
    assert event.session.payment_status is PaymentStatus.PAID
    session = await provider.retrieve_session(opened.provider_session_id)
    assert session.status is SessionStatus.COMPLETE
    assert session.payment_status is PaymentStatus.PAID
    assert session.references.payment_intent is not None
    assert session.checkout_url is None
    assert session.customer.email == "customer@example.com"


async def test_delayed_payment_completes_unpaid_then_succeeds(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        sid = opened.provider_session_id
        await client.post(f"/_sim/sessions/{sid}/pay", json={"delayed": True})
        pending = await provider.retrieve_session(sid)
        await client.post(f"/_sim/sessions/{sid}/pay")
    assert pending.status is SessionStatus.COMPLETE
    assert pending.payment_status is PaymentStatus.UNPAID
    events = verify_all(provider, box)
    assert [e.kind for e in events] == ["completed", "async_payment_succeeded"]
    assert [e.session.payment_status for e in events if e.session] == [
        PaymentStatus.UNPAID,
        PaymentStatus.PAID,
    ]
    assert (await provider.retrieve_session(sid)).payment_status is PaymentStatus.PAID


async def test_fail_sends_completed_unpaid_then_async_failed(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    await sim.fail(opened.provider_session_id)
    events = verify_all(provider, box)
    assert [e.kind for e in events] == ["completed", "async_payment_failed"]
    session = await provider.retrieve_session(opened.provider_session_id)
    assert (session.status, session.payment_status) == (
        SessionStatus.COMPLETE,
        PaymentStatus.UNPAID,
    )


async def test_fail_after_a_delayed_pay(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    await sim.pay(opened.provider_session_id, DriveRequest(delayed=True))
    await sim.fail(opened.provider_session_id)
    assert box.types() == ["checkout.session.completed", "checkout.session.async_payment_failed"]


async def test_expire_through_the_api(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    expired = await provider.expire_session(opened.provider_session_id)
    assert expired.status is SessionStatus.EXPIRED
    assert expired.checkout_url is None
    await sim.webhooks.wait_idle()
    [event] = verify_all(provider, box)
    assert event.kind == "expired"
    with pytest.raises(ProviderRejected) as again:
        await provider.expire_session(opened.provider_session_id)
    assert again.value.details["http_status"] == 400


async def test_expire_driven_by_the_simulator(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        answer = await client.post(f"/_sim/sessions/{opened.provider_session_id}/expire")
        conflict = await client.post(f"/_sim/sessions/{opened.provider_session_id}/pay")
    assert answer.json()["session"]["status"] == "expired"
    assert conflict.status_code == 409
    assert [e.kind for e in verify_all(provider, box)] == ["expired"]
    assert (
        await provider.retrieve_session(opened.provider_session_id)
    ).status is SessionStatus.EXPIRED


async def test_expire_of_a_paid_session_is_rejected(
    provider: StripeProvider, sim: StripeSimulator
) -> None:
    opened = await provider.open_session(open_request())
    await sim.pay(opened.provider_session_id)
    with pytest.raises(ProviderRejected):
        await provider.expire_session(opened.provider_session_id)


async def test_hosted_page_pays(provider: StripeProvider, inbox: tuple[Inbox, str]) -> None:
    box, _ = inbox
    opened = await provider.open_session(open_request())
    assert opened.checkout_url is not None
    async with httpx.AsyncClient() as client:
        page = await client.get(opened.checkout_url)
        submitted = await client.post(opened.checkout_url, data={"action": "pay"})
    assert "Pay" in page.text
    assert submitted.status_code == 303
    assert submitted.headers["location"] == (
        f"https://shop.example/ok?cs={opened.provider_session_id}"
    )
    assert box.types() == ["checkout.session.completed"]


# --- faults -----------------------------------------------------------------------------------


async def test_sdk_retry_after_a_5xx_keeps_the_idempotency_key(sim: StripeSimulator) -> None:
    adapter = StripeProvider(config(sim, max_network_retries=1))
    sim.faults.set(error_next=1)
    try:
        session = await adapter.open_session(open_request())
    finally:
        await adapter.aclose()
    assert session.status is SessionStatus.OPEN
    assert sim.stats()["sessions_created"] == 1
    assert sim.faults.injected_errors == 1


# --- webhook verification ---------------------------------------------------------------------


async def paid_webhook(
    provider: StripeProvider, sim: StripeSimulator, box: Inbox
) -> tuple[dict[str, str], bytes]:
    opened = await provider.open_session(open_request())
    await sim.pay(opened.provider_session_id)
    return box.received[-1]


async def test_sdk_construct_event_accepts_the_simulators_signature(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    headers, body = await paid_webhook(provider, sim, inbox[0])
    event = stripe.Webhook.construct_event(body, headers["stripe-signature"], WEBHOOK_SECRET)
    assert event.type == "checkout.session.completed"
    session = event.data.object
    assert isinstance(session, stripe.checkout.Session)
    assert session.payment_status == "paid"


async def test_stale_signature_is_rejected(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    _, body = await paid_webhook(provider, sim, inbox[0])
    now = datetime.now(UTC)
    stale = sim.signature_header(body, int(now.timestamp()) - 301)
    with pytest.raises(WebhookRejected, match="old"):
        provider.verify_webhook({"Stripe-Signature": stale}, body, now)
    edge = sim.signature_header(body, int(now.timestamp()) - 299)
    assert provider.verify_webhook({"Stripe-Signature": edge}, body, now).kind == "completed"


async def test_future_signature_is_rejected_though_the_sdk_accepts_it(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    _, body = await paid_webhook(provider, sim, inbox[0])
    now = datetime.now(UTC)
    future = sim.signature_header(body, int((now + timedelta(hours=1)).timestamp()))
    stripe.Webhook.construct_event(body, future, WEBHOOK_SECRET)  # the SDK lets it through
    with pytest.raises(WebhookRejected, match="future"):
        provider.verify_webhook({"stripe-signature": future}, body, now)


async def test_the_clock_is_a_parameter(
    provider: StripeProvider, sim: StripeSimulator, inbox: tuple[Inbox, str]
) -> None:
    headers, body = await paid_webhook(provider, sim, inbox[0])
    later = datetime.now(UTC) + timedelta(minutes=10)
    with pytest.raises(WebhookRejected):
        provider.verify_webhook(headers, body, later)


# --- the simulator speaks Stripe to the SDK ---------------------------------------------------


async def test_list_and_line_items_through_the_sdk(
    provider: StripeProvider, sdk: stripe.StripeClient
) -> None:
    ids = [
        (await provider.open_session(open_request(f"sess_{n}"))).provider_session_id
        for n in range(3)
    ]
    page = await sdk.v1.checkout.sessions.list_async({"limit": 2})
    assert [s.id for s in page.data] == ids[::-1][:2]
    assert page.has_more
    rest = await sdk.v1.checkout.sessions.list_async(
        {"limit": 2, "starting_after": page.data[-1].id}
    )
    assert [s.id for s in rest.data] == [ids[0]]
    items = await sdk.v1.checkout.sessions.line_items.list_async(ids[0])
    assert [i.description for i in items.data] == ["Tea", "Pot"]


async def test_unknown_parameter_and_key_reuse_are_stripe_errors(sdk: stripe.StripeClient) -> None:
    params: Any = {
        "mode": "payment",
        "line_items": [
            {"price_data": {"currency": "usd", "unit_amount": 500, "product_data": {"name": "x"}}}
        ],
    }
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        await sdk.v1.checkout.sessions.create_async({**params, "colour": "blue"})
    assert unknown.value.param == "colour"
    await sdk.v1.checkout.sessions.create_async(params, {"idempotency_key": "k1"})
    other = {**params, "client_reference_id": "different"}
    with pytest.raises(stripe.IdempotencyError):
        await sdk.v1.checkout.sessions.create_async(other, {"idempotency_key": "k1"})


async def test_stripe_amount_rules_at_the_simulator(sdk: stripe.StripeClient) -> None:
    def params(currency: str, amount: int) -> Any:
        data = {"currency": currency, "unit_amount": amount, "product_data": {"name": "x"}}
        return {"mode": "payment", "line_items": [{"price_data": data, "quantity": 1}]}

    with pytest.raises(stripe.InvalidRequestError) as isk:
        await sdk.v1.checkout.sessions.create_async(params("isk", 550))
    assert isk.value.code == "invalid_charge_amount_no_decimal_compatible"
    with pytest.raises(stripe.InvalidRequestError):
        await sdk.v1.checkout.sessions.create_async(params("kwd", 1235))
    with pytest.raises(stripe.InvalidRequestError) as small:
        await sdk.v1.checkout.sessions.create_async(params("usd", 49))
    assert small.value.code == "amount_too_small"
    ok = await sdk.v1.checkout.sessions.create_async(params("xof", 49))
    assert ok.amount_total == 49


async def test_adapter_config_points_the_adapter_at_the_simulator(sim: StripeSimulator) -> None:
    adapter = StripeProvider(sim.adapter_config(max_network_retries=0))
    try:
        session = await adapter.open_session(open_request())
    finally:
        await adapter.aclose()
    assert session.provider_session_id in sim.sessions
