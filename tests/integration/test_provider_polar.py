"""The Polar adapter against the Polar simulator, over real HTTP, with real webhooks.

What every provider does (idempotent open, 5xx/timeout/refused connection, wrong
credential, unknown session, forged/redelivered/dropped webhooks) is proved once for all
in tests/integration/providers/test_contract.py; this file keeps what is Polar's own."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from events.values import (
    Address,
    Customer,
    Mode,
    PaymentStatus,
    Provider,
    RequestedAmount,
    SessionStatus,
    SessionUrls,
)
from orchestrator.http.server import HttpServer
from orchestrator.providers.base import (
    OpenRequest,
    PaymentProvider,
    ProviderRejected,
    ProviderUnavailable,
    UnsupportedOperation,
    WebhookRejected,
)
from orchestrator.providers.polar.client import PolarConfig, PolarProvider
from orchestrator.sandbox.polar_sim import PolarCatalog, PolarSimulator
from orchestrator.sandbox.simulator import DriveRequest
from tests.integration.providers.harness import Receiver

TOKEN = "polar_oat_sandbox_token"  # noqa: S105 - the simulator's own
SECRET = "whsec_" + base64.b64encode(b"polar-sandbox-webhook-secret").decode()
ONE_TIME, MONTHLY = "prod_sim_one_time", "prod_sim_monthly"


@dataclass
class Clock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, tz=UTC)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with HttpServer(receiver.app()) as server:
        receiver.url = f"{server.base_url}/webhooks"
        yield receiver


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim(receiver: Receiver, clock: Clock) -> AsyncIterator[PolarSimulator]:
    catalog = PolarCatalog(discounts={"disc_10": 1000}, tax_rate_bps=2000)
    async with PolarSimulator(
        access_token=TOKEN,
        webhook_secret=SECRET,
        catalog=catalog,
        webhook_url=receiver.url,
        clock=clock,
    ) as sim:
        yield sim


def config(base_url: str, **changes: Any) -> PolarConfig:
    fields: dict[str, Any] = {
        "access_token": SecretStr(TOKEN),
        "webhook_secret": SecretStr(SECRET),
        "payment_product_id": ONE_TIME,
        "subscription_product_id": MONTHLY,
        "base_url": base_url,
        "timeout_seconds": 2.0,
    }
    return PolarConfig(**(fields | changes))


@pytest.fixture
async def polar(sim: PolarSimulator) -> AsyncIterator[PolarProvider]:
    provider = PolarProvider(sim.adapter_config(timeout_seconds=2.0))
    assert sim.adapter_config() == config(sim.base_url, timeout_seconds=10.0)
    yield provider
    await provider.aclose()


def request(**changes: Any) -> OpenRequest:
    fields: dict[str, Any] = {
        "session_id": "cs_polar_1",
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="USD", amount=2500),
        "customer": Customer(email="ada@example.com"),
        "urls": SessionUrls(success_url="https://shop.example/ok"),
        "metadata": {"order": "42"},
        "client_reference_id": "cart-7",
    }
    return OpenRequest(**(fields | changes))


async def drive(sim: PolarSimulator, session_id: str, action: str) -> dict[str, Any]:
    """Drive through the HTTP control route, as the demo and other processes do."""
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        answer = await client.post(f"/_sim/sessions/{session_id}/{action}")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


async def test_the_adapter_satisfies_the_protocol() -> None:
    provider: PaymentProvider = PolarProvider(config("http://127.0.0.1:9"))
    await provider.aclose()
    assert provider.name is Provider.POLAR
    assert provider.capabilities.modes == {Mode.PAYMENT, Mode.SUBSCRIPTION}
    assert provider.capabilities.min_amount["USD"] == 50


# --- open and retrieve ------------------------------------------------------------------------


async def test_open_returns_a_canonical_open_session(
    polar: PolarProvider, sim: PolarSimulator
) -> None:
    session = await polar.open_session(request())
    assert session.provider is Provider.POLAR
    assert (session.status, session.payment_status) == (SessionStatus.OPEN, PaymentStatus.UNPAID)
    assert session.mode is Mode.PAYMENT
    assert session.session_id == "cs_polar_1"
    assert session.client_reference_id == "cart-7"
    assert session.metadata == {"order": "42"}
    assert session.checkout_url is not None
    assert session.checkout_url.startswith(sim.base_url)
    assert session.client_secret is not None
    assert session.amounts is not None
    assert (session.amounts.subtotal, session.amounts.discount) == (2500, 0)
    assert (session.amounts.tax, session.amounts.total) == (None, 2500)  # no country: no tax yet
    assert session.expires_at is not None
    assert session.created_at is not None
    assert session.expires_at - session.created_at == timedelta(hours=1)
    assert sim.stats()["sessions_created"] == 1
    retrieved = await polar.retrieve_session(session.provider_session_id)
    assert retrieved.model_dump(exclude={"raw", "client_secret"}) == session.model_dump(
        exclude={"raw", "client_secret"}
    )


async def test_subscription_mode_uses_the_recurring_product(polar: PolarProvider) -> None:
    session = await polar.open_session(request(mode=Mode.SUBSCRIPTION))
    assert session.mode is Mode.SUBSCRIPTION
    assert session.raw["product_id"] == MONTHLY


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"mode": Mode.SETUP}, id="setup-mode"),
        pytest.param({"amount": RequestedAmount(currency="XOF", amount=2500)}, id="currency"),
        pytest.param({"amount": RequestedAmount(currency="USD", amount=49)}, id="minimum"),
    ],
)
async def test_what_polar_cannot_take_is_rejected_before_any_call(
    polar: PolarProvider, sim: PolarSimulator, bad: dict[str, Any]
) -> None:
    with pytest.raises(ProviderRejected):
        await polar.open_session(request(**bad))
    assert sim.all_stats()["api_requests"] == 0


async def test_the_amounts_trap_over_http(polar: PolarProvider, sim: PolarSimulator) -> None:
    """A discount applied with PATCH: Polar's subtotal_amount is after it, ours is before."""
    customer = Customer(email="ada@example.com", address=Address(country="FR"))
    session = await polar.open_session(request(customer=customer))
    patched = await polar.api.update_checkout(
        session.provider_session_id, {"discount_id": "disc_10"}
    )
    assert (patched["subtotal_amount"], patched["net_amount"]) == (1500, 1500)
    amounts = (await polar.retrieve_session(session.provider_session_id)).amounts
    assert amounts is not None
    assert (amounts.subtotal, amounts.discount, amounts.tax, amounts.total) == (
        2500,
        1000,
        300,
        1800,
    )
    assert sim.stats()["update_requests"] == 1


async def test_list_checkouts(polar: PolarProvider, clock: Clock) -> None:
    opened = []
    for attempt in (1, 2, 3):
        opened.append(await polar.open_session(request(attempt=attempt)))
        clock.now += 1
    listed = await polar.api.list_checkouts(product_id=ONE_TIME, limit=2, sorting="-created_at")
    assert [item["id"] for item in listed] == [s.provider_session_id for s in opened[::-1][:2]]


# --- pay, fail, expire: drives and their signed webhooks --------------------------------------


async def test_pay_sends_confirmed_succeeded_and_order_paid(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await polar.open_session(request())
    result = await drive(sim, session.provider_session_id, "pay")
    assert [w["state"] for w in result["webhooks"]] == ["delivered"] * 3
    events = [polar.verify_webhook(h, body, clock.at()) for h, body in receiver.received]
    assert [(e.provider_type, e.kind) for e in events] == [
        ("checkout.updated", "processing"),
        ("checkout.updated", "completed"),
        ("order.paid", "completed"),
    ]
    assert {e.provider_session_id for e in events} == {session.provider_session_id}
    assert {e.session.session_id for e in events if e.session} == {"cs_polar_1"}
    assert len({e.event_id for e in events}) == 3
    paid = await polar.retrieve_session(session.provider_session_id)
    assert (paid.status, paid.payment_status) == (SessionStatus.COMPLETE, PaymentStatus.PAID)
    assert paid.amounts is not None
    assert (paid.amounts.tax, paid.amounts.total) == (500, 3000)  # 20 % once the country is known


async def test_delayed_pay_stays_processing_until_paid(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await polar.open_session(request())
    await sim.pay(session.provider_session_id, DriveRequest(delayed=True))
    processing = await polar.retrieve_session(session.provider_session_id)
    assert processing.status is SessionStatus.PROCESSING
    assert processing.payment_status is PaymentStatus.UNPAID
    await sim.pay(session.provider_session_id)
    kinds = [polar.verify_webhook(h, b, clock.at()).kind for h, b in receiver.received]
    assert kinds == ["processing", "completed", "completed"]


async def test_fail(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await polar.open_session(request())
    await drive(sim, session.provider_session_id, "fail")
    ((headers, body),) = receiver.received
    event = polar.verify_webhook(headers, body, clock.at())
    assert (event.kind, event.provider_session_id) == (
        "payment_failed",
        session.provider_session_id,
    )
    failed = await polar.retrieve_session(session.provider_session_id)
    assert (failed.status, failed.payment_status) == (SessionStatus.FAILED, PaymentStatus.UNPAID)


async def test_expire_is_polars_own_and_the_adapter_says_unsupported(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await polar.open_session(request())
    with pytest.raises(UnsupportedOperation):
        await polar.expire_session(session.provider_session_id)
    await drive(sim, session.provider_session_id, "expire")
    ((headers, body),) = receiver.received
    event = polar.verify_webhook(headers, body, clock.at())
    assert (event.provider_type, event.kind) == ("checkout.expired", "expired")
    expired = await polar.retrieve_session(session.provider_session_id)
    assert expired.status is SessionStatus.EXPIRED


async def test_a_checkout_expires_an_hour_after_creation(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await polar.open_session(request())
    clock.now += 3601
    assert (await polar.retrieve_session(session.provider_session_id)).status is (
        SessionStatus.EXPIRED
    )
    await sim.webhooks.wait_idle()
    ((headers, body),) = receiver.received
    assert polar.verify_webhook(headers, body, clock.at()).kind == "expired"


# --- webhooks: trust ----------------------------------------------------------------------------


async def paid_webhooks(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver
) -> list[tuple[dict[str, str], bytes]]:
    session = await polar.open_session(request())
    await sim.pay(session.provider_session_id)
    return receiver.received


async def test_stale_and_future_webhooks_are_rejected(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    """Polar signs a timestamp (Standard Webhooks); forgery is the contract suite's."""
    headers, body = (await paid_webhooks(polar, sim, receiver))[1]
    with pytest.raises(WebhookRejected, match="too old"):
        polar.verify_webhook(headers, body, clock.at() + timedelta(minutes=6))
    with pytest.raises(WebhookRejected, match="future"):
        polar.verify_webhook(headers, body, clock.at() - timedelta(minutes=6))
    assert polar.verify_webhook(headers, body, clock.at()).kind == "completed"


async def test_the_simulator_signs_with_the_utf8_bytes_of_the_whole_secret(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver
) -> None:
    standardwebhooks = pytest.importorskip("standardwebhooks")
    headers, body = (await paid_webhooks(polar, sim, receiver))[0]
    as_polar = standardwebhooks.Webhook(base64.b64encode(SECRET.encode("utf-8")).decode())
    as_polar.verify(body, headers)  # the reference verifier, given Polar's key, agrees
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(SECRET).verify(body, headers)  # the plain reading fails


async def test_a_redelivery_keeps_the_event_id_and_is_freshly_signed(
    polar: PolarProvider, sim: PolarSimulator, receiver: Receiver, clock: Clock
) -> None:
    await paid_webhooks(polar, sim, receiver)
    first = sim.webhooks.deliveries[1]
    clock.now += 60
    await sim.webhooks.redeliver(first.delivery_id)
    (h1, b1), (h2, b2) = receiver.received[1], receiver.received[-1]
    assert h1["webhook-timestamp"] != h2["webhook-timestamp"]
    e1, e2 = polar.verify_webhook(h1, b1, clock.at()), polar.verify_webhook(h2, b2, clock.at())
    assert e1.event_id == e2.event_id  # the ingress dedupes on it


# --- faults -----------------------------------------------------------------------------------


async def test_create_failing_after_the_lookup_is_unavailable(sim: PolarSimulator) -> None:
    provider = PolarProvider(config(sim.base_url, dedupe_lookup=False))
    sim.faults.set(error_next=1, error_status=500)
    try:
        with pytest.raises(ProviderUnavailable):
            await provider.open_session(request())
    finally:
        await provider.aclose()
    assert sim.stats()["sessions_created"] == 0


async def test_a_path_like_id_is_rejected_not_followed(polar: PolarProvider) -> None:
    """An unknown id and a wrong token are the contract suite's; this one is Polar's paths."""
    with pytest.raises(ProviderRejected):
        await polar.retrieve_session("../v1/orders")
