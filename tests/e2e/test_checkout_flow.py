"""End to end: HTTP -> NATS command -> router -> provider simulator -> events -> read model,
and provider webhooks back through the inbox. Real NATS, real Postgres, real HTTP."""

from __future__ import annotations

import json
import time

import pytest

from orchestrator.sandbox.simulator import DriveRequest
from tests.support.apps import running_stack, session_where
from tests.support.builders import create_body
from tests.support.waiting import wait_until


@pytest.fixture
async def system(nats_url, database_url, stream_names):
    async with running_stack(
        nats_url, database_url, stream_names, settlement_interval_seconds=0.2
    ) as stack:
        yield stack.fleet, stack.gateway, stack.http


async def test_a_gbp_card_checkout_opens_at_stripe_and_a_payment_completes_it(system):
    fleet, _, http = system
    response = await http.post("/v1/checkout-sessions", json=create_body())
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["provider"] == "stripe"
    assert created["checkout_url"].startswith("http")
    assert created["appended"] == 3  # requested, routed, provider_session_opened
    await fleet.stripe.pay(created["provider_session_id"])
    paid = await session_where(http, created["session_id"], status="complete")
    assert paid["payment_status"] == "paid"
    assert paid["provider"] == "stripe"


async def test_xof_in_senegal_goes_to_lomi_and_its_webhook_completes_it(system):
    fleet, _, http = system
    body = create_body(currency="XOF", amount=5000, customer={"email": "a@b.sn", "country": "SN"})
    created = (await http.post("/v1/checkout-sessions", json=body)).json()
    assert created["provider"] == "lomi"
    await fleet.lomi.pay(created["provider_session_id"])
    done = await session_where(http, created["session_id"], status="complete")
    assert done["amount"] == 5000
    assert done["currency"] == "XOF"


async def test_stripe_outage_falls_back_and_the_explanation_says_why(system):
    fleet, _, http = system
    fleet.stripe.faults.set(error_next=50, error_status=503)
    created = (await http.post("/v1/checkout-sessions", json=create_body(currency="USD"))).json()
    assert created["provider"] == "polar"
    events = await wait_until(lambda: _events(http, created["session_id"], created["sequence"]), 15)
    types = [e["type"] for e in events]
    assert types == ["requested", "routed", "provider_call_failed", "provider_session_opened"]
    failed = events[2]["payload"]
    assert failed["provider"] == "stripe"
    assert failed["fallback"] == "polar"
    assert failed["retryable"] is True


async def _events(http, session_id, min_sequence):
    response = await http.get(
        f"/v1/checkout-sessions/{session_id}/events", params={"min_sequence": min_sequence}
    )
    return response.json() if response.status_code == 200 else None


async def test_a_redelivered_create_opens_one_provider_session(system):
    fleet, _, http = system
    body = create_body()
    headers = {"Idempotency-Key": f"k-{body['session_id']}"}
    first = (await http.post("/v1/checkout-sessions", json=body, headers=headers)).json()
    again = (await http.post("/v1/checkout-sessions", json=body, headers=headers)).json()
    assert again["duplicate"] is True
    assert again["provider_session_id"] == first["provider_session_id"]
    assert fleet.stripe.stats()["sessions_created"] == 1


async def test_invalid_create_is_a_typed_422_and_appends_nothing(system):
    _, _, http = system
    response = await http.post("/v1/checkout-sessions", json=create_body(currency="ZZZ"))
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


async def test_forged_and_stale_webhooks_are_rejected_and_stored_nowhere(system):
    fleet, gw, http = system
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    body = json.dumps(
        {
            "id": "evt_forged",
            "type": "checkout.session.completed",
            "created": int(time.time()),
            "data": {"object": fleet.stripe.describe(created["provider_session_id"])},
        }
    ).encode()
    forged = {"Stripe-Signature": f"t={int(time.time())},v1={'0' * 64}"}
    stale = {"Stripe-Signature": fleet.stripe.signature_header(body, int(time.time()) - 3600)}
    future = {"Stripe-Signature": fleet.stripe.signature_header(body, int(time.time()) + 3600)}
    for headers in (forged, stale, future):
        response = await http.post("/v1/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["code"] == "webhook_rejected"
    assert await gw.inbox.counts() == {}
    session = await session_where(http, created["session_id"], status="open")
    assert session["payment_status"] is None


async def test_the_same_webhook_three_times_has_one_effect(system):
    fleet, gw, http = system
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    result = await fleet.stripe.pay(created["provider_session_id"])
    await session_where(http, created["session_id"], status="complete")
    for delivery in list(fleet.stripe.webhooks.deliveries):
        await fleet.stripe.webhooks.redeliver(delivery.delivery_id)
        await fleet.stripe.webhooks.redeliver(delivery.delivery_id)
    await wait_until(lambda: _all_processed(gw), 15)
    events = await _events(http, created["session_id"], 1)
    assert [e["type"] for e in events].count("completed") == 1
    assert result is not None


async def _all_processed(gw):
    counts = await gw.inbox.counts()
    return counts and "pending" not in counts


async def test_delayed_payment_completes_unpaid_then_succeeds(system):
    fleet, _, http = system
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    psid = created["provider_session_id"]
    await fleet.stripe.pay(psid, DriveRequest(delayed=True))
    unpaid = await session_where(http, created["session_id"], status="complete")
    assert unpaid["payment_status"] == "unpaid"
    await fleet.stripe.pay(psid)  # the bank transfer settles
    await session_where(http, created["session_id"], payment_status="paid")


async def test_merchant_expire_closes_the_session_at_the_provider_too(system):
    fleet, _, http = system
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    sid = created["session_id"]
    response = await http.post(f"/v1/checkout-sessions/{sid}/expire")
    assert response.status_code == 200, response.text
    await session_where(http, sid, status="expired")
    assert fleet.stripe.describe(created["provider_session_id"])["status"] == "expired"


async def test_expire_of_a_session_paid_meanwhile_is_refused(system):
    fleet, _, http = system
    fleet.stripe.webhooks.url = None  # the payment's webhook is lost on the way
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    await fleet.stripe.pay(created["provider_session_id"])
    response = await http.post(f"/v1/checkout-sessions/{created['session_id']}/expire")
    assert response.status_code == 409
    assert response.json()["code"] == "payment_completed"


async def test_a_late_completion_after_expiry_is_rejected_and_kept_in_the_inbox(system):
    fleet, gw, http = system
    body = create_body(currency="XOF", amount=5000, customer={"email": "a@b.sn", "country": "SN"})
    created = (await http.post("/v1/checkout-sessions", json=body)).json()
    assert created["provider"] == "lomi"  # lomi has no expire endpoint: its page stays payable
    await http.post(f"/v1/checkout-sessions/{created['session_id']}/expire")
    await session_where(http, created["session_id"], status="expired")
    await fleet.lomi.pay(created["provider_session_id"])
    counts = await wait_until(lambda: _settled(gw, "rejected"), 15)
    assert counts["rejected"] == 1
    await session_where(http, created["session_id"], status="expired")


async def _settled(gw, status):
    counts = await gw.inbox.counts()
    return counts if counts.get(status) else None


async def test_the_sweeper_expires_sessions_past_their_expiry_at_the_provider(system):
    fleet, gw, http = system
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    await session_where(http, created["session_id"], status="open")
    settler = gw.settler
    settler._clock = lambda: (
        __import__("datetime").datetime.now(__import__("datetime").UTC)
        + __import__("datetime").timedelta(days=2)
    )
    assert await settler.sweep_once() >= 1
    await session_where(http, created["session_id"], status="expired")
    assert fleet.stripe.describe(created["provider_session_id"])["status"] == "expired"


async def test_a_completion_that_overtakes_the_create_still_ends_complete(system):
    """The provider's webhook arrives before our create is recorded: the inbox retries."""
    from events.values import Customer, Mode, Provider, RequestedAmount, SessionUrls
    from orchestrator.providers.base import OpenRequest

    fleet, gw, http = system
    body = create_body()
    # the provider session our create will open (same session id, attempt 1: same key)
    early = await fleet.providers[Provider.STRIPE].open_session(
        OpenRequest(
            session_id=body["session_id"],
            attempt=1,
            mode=Mode.PAYMENT,
            amount=RequestedAmount(currency="GBP", amount=4997),
            customer=Customer(**body["customer"]),
            urls=SessionUrls(**body["urls"]),
        )
    )
    await fleet.stripe.pay(early.provider_session_id)  # webhook: session unknown to us yet
    await wait_until(lambda: _retrying(gw), 15)
    created = (await http.post("/v1/checkout-sessions", json=body)).json()
    assert created["provider_session_id"] == early.provider_session_id
    done = await session_where(http, body["session_id"], status="complete", payment_status="paid")
    assert done["provider_session_id"] == early.provider_session_id


async def _retrying(gw):
    async with gw.processor._pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM webhook_inbox WHERE status = 'pending' AND attempts > 0"
        )
