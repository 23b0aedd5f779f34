"""The lomi adapter against the lomi simulator, over real HTTP, with real webhooks.

What every provider does (idempotent open, 5xx/timeout/refused connection, wrong
credential, unknown session, forged/redelivered/dropped webhooks) is proved once for all
in tests/integration/providers/test_contract.py; this file keeps what is lomi's own."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
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
from orchestrator.http.server import HttpServer
from orchestrator.providers.base import (
    OpenRequest,
    PaymentProvider,
    ProviderRejected,
    UnsupportedOperation,
)
from orchestrator.providers.lomi import transformers
from orchestrator.providers.lomi.client import LomiConfig, LomiProvider
from orchestrator.sandbox.lomi_sim import LomiSimulator
from tests.integration.providers.harness import Receiver

API_KEY = "lomi_sk_test_sandbox"
SECRET = "lomi_whsec_sandbox_secret"  # noqa: S105 - the simulator's own


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
async def sim(receiver: Receiver, clock: Clock) -> AsyncIterator[LomiSimulator]:
    async with LomiSimulator(
        api_key=API_KEY, webhook_secret=SECRET, webhook_url=receiver.url, clock=clock
    ) as sim:
        yield sim


def config(base_url: str, **changes: Any) -> LomiConfig:
    fields: dict[str, Any] = {
        "api_key": SecretStr(API_KEY),
        "webhook_secret": SecretStr(SECRET),
        "base_url": base_url,
        "timeout_seconds": 2.0,
    }
    return LomiConfig(**(fields | changes))


@pytest.fixture
async def lomi(sim: LomiSimulator) -> AsyncIterator[LomiProvider]:
    provider = LomiProvider(sim.adapter_config(timeout_seconds=2.0))
    assert sim.adapter_config() == config(sim.base_url, timeout_seconds=10.0)
    yield provider
    await provider.aclose()


def request(**changes: Any) -> OpenRequest:
    fields: dict[str, Any] = {
        "session_id": "cs_lomi_1",
        "attempt": 1,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency="XOF", amount=10000),
        "customer": Customer(email="awa@example.sn", phone="+221770000000", country="SN"),
        "urls": SessionUrls(success_url="https://shop.example/ok"),
        "metadata": {"order": "42"},
    }
    return OpenRequest(**(fields | changes))


async def drive(sim: LomiSimulator, session_id: str, action: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        answer = await client.post(f"/_sim/sessions/{session_id}/{action}")
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result


async def test_the_adapter_satisfies_the_protocol() -> None:
    provider: PaymentProvider = LomiProvider(config("http://127.0.0.1:9"))
    await provider.aclose()
    assert provider.name is Provider.LOMI
    assert provider.capabilities.currencies == {"XOF", "USD", "EUR"}
    assert provider.capabilities.modes == {Mode.PAYMENT}


# --- open and retrieve ------------------------------------------------------------------------


async def test_open_returns_an_open_session_with_integer_francs(
    lomi: LomiProvider, sim: LomiSimulator
) -> None:
    session = await lomi.open_session(request())
    wire = sim.describe(session.provider_session_id)
    assert wire["amount"] == 10000.0
    assert isinstance(wire["amount"], float)
    assert session.amounts is not None
    assert session.amounts.total == 10000
    assert type(session.amounts.total) is int
    assert session.currency == "XOF"
    assert (session.status, session.payment_status) == (SessionStatus.OPEN, PaymentStatus.UNPAID)
    assert session.session_id == "cs_lomi_1"
    assert session.metadata == {"order": "42"}
    assert session.checkout_url == f"{sim.base_url}/checkout/{session.provider_session_id}"
    assert session.created_at is not None
    assert session.expires_at is not None
    assert session.expires_at - session.created_at == timedelta(minutes=60)
    retrieved = await lomi.retrieve_session(session.provider_session_id)
    assert retrieved.model_dump(exclude={"raw"}) == session.model_dump(exclude={"raw"})


async def test_line_items_and_our_expiry_which_lomi_does_not_take(
    lomi: LomiProvider, clock: Clock
) -> None:
    amount = RequestedAmount(
        currency="EUR", line_items=(LineItem(name="Tea", quantity=3, unit_amount=250),)
    )
    expires = clock.at() + timedelta(minutes=15)
    session = await lomi.open_session(request(amount=amount, expires_at=expires))
    assert session.amounts is not None
    assert (session.currency, session.amounts.total) == ("EUR", 750)
    # not sent (not in lomi's create schema): lomi's own 60 minutes; the orchestrator
    # enforces our 15 (create_flow.with_our_expiry + the settlement sweeper)
    assert session.expires_at is not None
    assert session.created_at is not None
    assert session.expires_at - session.created_at == timedelta(minutes=60)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"amount": RequestedAmount(currency="GBP", amount=100)}, id="currency"),
        pytest.param({"customer": Customer(name="Awa")}, id="no-email-no-id"),
        pytest.param({"mode": Mode.SUBSCRIPTION}, id="mode"),
    ],
)
async def test_what_lomi_cannot_take_is_rejected_before_any_call(
    lomi: LomiProvider, sim: LomiSimulator, bad: dict[str, Any]
) -> None:
    with pytest.raises(ProviderRejected):
        await lomi.open_session(request(**bad))
    assert sim.all_stats()["api_requests"] == 0


async def test_a_fractional_amount_from_lomi_is_refused_not_rounded(
    lomi: LomiProvider, sim: LomiSimulator
) -> None:
    session = await lomi.open_session(request())
    sim.sessions[session.provider_session_id]["amount"] = 10000.5
    with pytest.raises(ProviderRejected, match="whole number"):
        await lomi.retrieve_session(session.provider_session_id)


async def test_the_simulator_refuses_what_lomi_refuses(sim: LomiSimulator) -> None:
    headers = {"X-API-KEY": API_KEY}
    base = {"currency_code": "XOF", "customer_email": "a@b.example"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
        fractional = await client.post("/checkout-sessions", json=base | {"amount": 10000.5})
        no_amount = await client.post("/checkout-sessions", json=base)
        typo = await client.post("/checkout-sessions", json=base | {"amount": 1, "amout": 1})
        listed = await client.get("/checkout-sessions", params={"status": "open"})
    assert [fractional.status_code, no_amount.status_code] == [400, 400]
    assert fractional.json()["error"]["code"] == "bad_request"  # lomi's exception filter
    # lomi's route validates with no whitelist: a field it lacks is accepted and ignored
    assert typo.status_code == 201
    assert sim.ignored_fields == ["amout"]
    assert [s["checkout_session_id"] for s in listed.json()] == [typo.json()["checkout_session_id"]]


async def test_list_sessions(lomi: LomiProvider, sim: LomiSimulator, clock: Clock) -> None:
    opened = []
    for attempt in (1, 2, 3):
        opened.append(await lomi.open_session(request(attempt=attempt)))
        clock.now += 1
    await sim.expire(opened[0].provider_session_id)
    listed = await lomi.api.list_checkout_sessions(status="open", limit=1, offset=0)
    assert [item["checkout_session_id"] for item in listed] == [opened[2].provider_session_id]
    everything = await lomi.api.list_checkout_sessions(limit=10)
    assert len(everything) == 3


# --- pay, fail, expire ------------------------------------------------------------------------


async def test_pay_sends_payment_succeeded_with_the_transaction_row(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await lomi.open_session(request())
    result = await drive(sim, session.provider_session_id, "pay")
    assert [w["state"] for w in result["webhooks"]] == ["delivered"]
    ((headers, body),) = receiver.received
    assert headers["x-lomi-event"] == "PAYMENT_SUCCEEDED"
    data = json.loads(body)["data"]
    assert "checkout_session_id" not in data  # lomi's row names no checkout session
    assert data["gross_amount"] == 10000.0
    assert data["net_amount"] < data["gross_amount"]
    event = lomi.verify_webhook(headers, body, clock.at())
    assert (event.kind, event.provider_session_id) == ("completed", None)
    assert event.session_id == "cs_lomi_1"  # our id, echoed in the transaction's metadata
    assert event.amounts is not None
    assert (event.amounts.currency, event.amounts.total) == ("XOF", 10000)
    assert event.event_id.startswith("evt_")
    assert not transformers.needs_poll(event)
    paid = await lomi.retrieve_session(session.provider_session_id)
    assert (paid.status, paid.payment_status) == (SessionStatus.COMPLETE, PaymentStatus.PAID)
    assert paid.amounts is not None
    assert paid.amounts.total == 10000


async def test_the_older_checkout_completed_event_carries_the_session(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver, clock: Clock
) -> None:
    sim.legacy_events = True
    session = await lomi.open_session(request())
    await sim.pay(session.provider_session_id)
    ((headers, body),) = receiver.received
    event = lomi.verify_webhook(headers, body, clock.at())
    assert (event.provider_type, event.kind) == ("CHECKOUT_COMPLETED", "completed")
    assert event.session is not None
    assert event.session.session_id == "cs_lomi_1"
    assert event.session.status is SessionStatus.COMPLETE


async def test_an_ambiguous_payment_is_settled_by_polling(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver, clock: Clock
) -> None:
    sim.echo_metadata = False
    paid_one = await lomi.open_session(request())
    other = await lomi.open_session(request(session_id="cs_lomi_2"))
    await sim.pay(paid_one.provider_session_id)
    ((headers, body),) = receiver.received
    event = lomi.verify_webhook(headers, body, clock.at())
    assert (event.kind, event.provider_session_id, event.session_id) == ("completed", None, None)
    assert transformers.needs_poll(event)
    # The poller: retrieve each session still open on our side, settle from lomi's status.
    polled = [await lomi.retrieve_session(s.provider_session_id) for s in (paid_one, other)]
    assert [s.status for s in polled] == [SessionStatus.COMPLETE, SessionStatus.OPEN]


async def test_a_pay_drive_can_send_the_webhook_without_our_metadata(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await lomi.open_session(request())
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        answer = await client.post(
            f"/_sim/sessions/{session.provider_session_id}/pay", json={"echo_metadata": False}
        )
    answer.raise_for_status()
    ((headers, body),) = receiver.received
    assert json.loads(body)["data"]["metadata"] == {}
    event = lomi.verify_webhook(headers, body, clock.at())  # signed after emptying
    assert (event.kind, event.session_id) == ("completed", None)
    assert transformers.needs_poll(event)
    assert sim.echo_metadata  # only that drive


async def test_a_failed_payment_leaves_the_session_open(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver, clock: Clock
) -> None:
    session = await lomi.open_session(request())
    await drive(sim, session.provider_session_id, "fail")
    ((headers, body),) = receiver.received
    event = lomi.verify_webhook(headers, body, clock.at())
    assert (event.kind, event.provider_session_id) == ("payment_failed", None)
    still = await lomi.retrieve_session(session.provider_session_id)
    assert (still.status, still.payment_status) == (SessionStatus.OPEN, PaymentStatus.UNPAID)


async def test_expiry_is_lomis_own_and_retrieve_shows_it(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver
) -> None:
    session = await lomi.open_session(request())
    with pytest.raises(UnsupportedOperation):
        await lomi.expire_session(session.provider_session_id)
    result = await drive(sim, session.provider_session_id, "expire")
    assert result["webhooks"] == []
    assert receiver.received == []
    expired = await lomi.retrieve_session(session.provider_session_id)
    assert (expired.status, expired.payment_status) == (SessionStatus.EXPIRED, PaymentStatus.UNPAID)


async def test_sessions_expire_after_sixty_minutes(
    lomi: LomiProvider, sim: LomiSimulator, clock: Clock
) -> None:
    session = await lomi.open_session(request())
    clock.now += 59 * 60
    assert (await lomi.retrieve_session(session.provider_session_id)).status is SessionStatus.OPEN
    clock.now += 61
    assert (await lomi.retrieve_session(session.provider_session_id)).status is (
        SessionStatus.EXPIRED
    )
    assert sim.stats()["sessions_expired"] == 1


# --- webhooks: trust --------------------------------------------------------------------------


async def test_without_a_signed_timestamp_a_replay_verifies_and_keeps_its_id(
    lomi: LomiProvider, sim: LomiSimulator, receiver: Receiver, clock: Clock
) -> None:
    """lomi signs no timestamp: a replay a day later verifies; the ingress dedupes on
    event_id. Forgery is the contract suite's."""
    session = await lomi.open_session(request())
    await sim.pay(session.provider_session_id)
    ((headers, body),) = receiver.received
    first = lomi.verify_webhook(headers, body, clock.at())
    replay = lomi.verify_webhook(headers, body, clock.at() + timedelta(days=1))
    assert first.event_id == replay.event_id


# --- faults -----------------------------------------------------------------------------------
