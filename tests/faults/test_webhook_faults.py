"""Fault: provider webhooks duplicated, reordered, delayed past expiry, forged, replayed
with an old (stale) or future timestamp. All over real HTTP to the gateway's ingress,
signed by the simulators' own signers (Stripe-Signature, Standard Webhooks for Polar,
X-Lomi-Signature).

Promised: one effect per provider event (one terminal event per session), every forged or
stale one refused with 400 and nothing stored or appended, a payment webhook that arrives
after the session expired is kept in the inbox as ``rejected`` for a human, never applied.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from orchestrator.providers.lomi.transformers import sign_webhook as lomi_sign
from orchestrator.providers.polar.transformers import sign_webhook as polar_sign
from orchestrator.sandbox.simulator import DriveRequest, Simulator
from orchestrator.sandbox.webhooks import Delivery
from tests.support.apps import (
    Stack,
    inbox_idle,
    running_stack,
    session_where,
    terminal_events,
)
from tests.support.builders import create_body
from tests.support.reports import Clock, report
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.fault]

LOMI = {"currency": "XOF", "amount": 5000, "customer": {"email": "a@b.sn", "country": "SN"}}
POLAR = {"currency": "USD", "amount": 2500, "metadata": {"product_type": "digital"}}
STRIPE: dict[str, Any] = {}


@pytest.fixture
async def stack(nats_url, database_url, stream_names):
    async with running_stack(nats_url, database_url, stream_names) as running:
        yield running


async def _create(stack: Stack, provider: str, fields: dict[str, Any]) -> dict[str, Any]:
    response = await stack.http.post("/v1/checkout-sessions", json=create_body(**fields))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert created["provider"] == provider
    return created


def _sim(stack: Stack, provider: str) -> Simulator:
    sim: Simulator = getattr(stack.fleet, provider)
    return sim


def _deliveries(sim: Simulator, *ids: str) -> list[Delivery]:
    """Deliveries naming any of ``ids``: lomi's PAYMENT_SUCCEEDED is a transaction row that
    names no checkout session, only our session id (in the metadata it echoes)."""
    return [d for d in sim.webhooks.deliveries if any(i.encode() in d.body for i in ids)]


async def _post(
    stack: Stack, provider: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await stack.http.post(
        f"/v1/webhooks/{provider}",
        content=body,
        headers={"Content-Type": "application/json", **headers},
    )


async def _status(stack: Stack, session_id: str, **expected: Any) -> dict[str, Any]:
    return await session_where(stack.http, session_id, 30, **expected)


async def _idle(stack: Stack) -> dict[str, int]:
    return await wait_until(lambda: inbox_idle(stack), what="an idle inbox")


async def test_duplicated_webhooks_have_one_effect(stack):
    clock = Clock()
    sessions = {
        "stripe": await _create(stack, "stripe", STRIPE),
        "polar": await _create(stack, "polar", POLAR),
        "lomi": await _create(stack, "lomi", LOMI),
    }
    answers: Counter[str] = Counter()
    sent = 0
    for provider, created in sessions.items():
        sim = _sim(stack, provider)
        await sim.pay(created["provider_session_id"])
        originals = _deliveries(sim, created["provider_session_id"], created["session_id"])
        assert originals
        assert all(d.state == "delivered" for d in originals)
        # each webhook again 3x through the provider's "resend" (freshly signed) and 3x as
        # the very same bytes and headers, all at once
        resends = [sim.webhooks.redeliver(d.delivery_id) for d in originals for _ in range(3)]
        copies = [_post(stack, provider, d.body, d.headers) for d in originals for _ in range(3)]
        results = await asyncio.gather(*resends, *copies)
        sent += len(originals) * 7
        for result in results:
            if isinstance(result, httpx.Response):
                assert result.status_code == 200, result.text
                answers["duplicate" if result.json()["duplicate"] else "stored"] += 1
            else:
                assert result.state == "delivered"
                answers["resent, delivered"] += 1
    counts = await _idle(stack)
    rows = await stack.inbox_rows()
    per_event = Counter((r["provider"], r["event_id"]) for r in rows)
    terminal = {
        p: terminal_events(await stack.history(c["session_id"])) for p, c in sessions.items()
    }
    for provider, created in sessions.items():
        await _status(stack, created["session_id"], status="complete", payment_status="paid")
        assert terminal[provider] == ["completed"]
        assert _sim(stack, provider).stats()["sessions_created"] == 1
    assert answers["stored"] == 0  # every copy was recognised as one already stored
    assert set(per_event.values()) == {1}  # one inbox row per provider event
    report(
        "duplicated webhooks",
        [
            (
                f"injected: {sent} deliveries of {len(rows)} provider events for 3 sessions "
                "(stripe, polar, lomi): each event 1x + 3x resent freshly signed"
                " + 3x the same bytes, concurrently"
            ),
            (
                f"found: inbox rows {len(rows)} (one per event id), statuses {dict(counts)}; "
                f"HTTP answers to the raw copies {dict(answers)}"
            ),
            (
                f"terminal events per session: { {p: len(t) for p, t in terminal.items()} }; "
                "provider sessions created per provider: 1"
            ),
            f"duration {clock():.1f} s",
        ],
    )


async def test_reordered_webhooks_end_in_the_right_state(stack):
    clock = Clock()
    lines = []
    # Stripe, delayed payment method: completed (unpaid), then async_payment_succeeded;
    # delivered the other way round
    created = await _create(stack, "stripe", STRIPE)
    stripe = stack.fleet.stripe
    url, stripe.webhooks.url = stripe.webhooks.url, None  # hold them at the provider
    psid = created["provider_session_id"]
    await stripe.pay(psid, DriveRequest(delayed=True))
    await stripe.pay(psid)
    held = _deliveries(stripe, psid)
    assert [d.event_type for d in held] == [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ]
    stripe.webhooks.url = url
    for delivery in reversed(held):
        assert (await stripe.webhooks.redeliver(delivery.delivery_id)).state == "delivered"
    sid = created["session_id"]
    done = await _status(stack, sid, status="complete", payment_status="paid")
    types = [r.event.type for r in await stack.history(sid)]
    assert types.count("completed") == 1
    assert types[-2:] == ["completed", "async_payment_succeeded"]
    retried = [r["attempts"] for r in await stack.inbox_rows() if r["session_id"] == sid]
    lines.append(
        f"stripe: async_payment_succeeded delivered before completed(unpaid) (inbox attempts "
        f"{retried}) -> "
        f"{done['status']}/{done['payment_status']}, events {types[3:]}"
    )

    # Polar: checkout.updated(confirmed), checkout.updated(succeeded), order.paid; reversed
    created = await _create(stack, "polar", POLAR)
    polar = stack.fleet.polar
    url, polar.webhooks.url = polar.webhooks.url, None
    await polar.pay(created["provider_session_id"])
    held = _deliveries(polar, created["provider_session_id"])
    assert len(held) == 3
    polar.webhooks.url = url
    for delivery in reversed(held):
        assert (await polar.webhooks.redeliver(delivery.delivery_id)).state == "delivered"
    done = await _status(stack, created["session_id"], status="complete", payment_status="paid")
    types = [r.event.type for r in await stack.history(created["session_id"])]
    assert terminal_events(await stack.history(created["session_id"])) == ["completed"]
    lines.append(
        f"polar: {', '.join(d.event_type for d in reversed(held))} (reversed) -> "
        f"{done['status']}/{done['payment_status']}, events {types[3:]}"
    )
    counts = await _idle(stack)
    report(
        "reordered webhooks",
        [*lines, f"inbox statuses {counts}", f"duration {clock():.1f} s"],
    )


async def test_a_payment_webhook_after_expiry_is_kept_for_a_human(stack):
    clock = Clock()
    lines = []
    for provider, fields in (("lomi", LOMI), ("polar", POLAR)):
        # neither has an expire endpoint: the customer can still pay their page
        created = await _create(stack, provider, fields)
        sid = created["session_id"]
        response = await stack.http.post(f"/v1/checkout-sessions/{sid}/expire")
        assert response.status_code == 200, response.text
        await _status(stack, sid, status="expired")
        await _sim(stack, provider).pay(created["provider_session_id"])

        async def rejected(sid: str = sid) -> list[dict[str, Any]]:
            rows = [r for r in await stack.inbox_rows() if r["session_id"] == sid]
            return [r for r in rows if r["status"] == "rejected"]

        await wait_until(rejected)
        await _idle(stack)
        kept = await rejected()
        await _status(stack, sid, status="expired")
        assert terminal_events(await stack.history(sid)) == ["expired"]
        lines.append(
            f"{provider}: paid after our expiry -> session stays expired (1 terminal event), "
            f"{len(kept)} inbox row(s) rejected: {kept[0]['outcome'][:70]!r}"
        )

    # Stripe: the completion webhook is delayed; meanwhile the merchant expires the session
    created = await _create(stack, "stripe", STRIPE)
    stripe = stack.fleet.stripe
    url, stripe.webhooks.url = stripe.webhooks.url, None
    await stripe.pay(created["provider_session_id"])
    response = await stack.http.post(f"/v1/checkout-sessions/{created['session_id']}/expire")
    assert response.status_code == 409
    assert response.json()["code"] == "payment_completed"
    stripe.webhooks.url = url
    for delivery in _deliveries(stripe, created["provider_session_id"]):
        await stripe.webhooks.redeliver(delivery.delivery_id)
    await _status(stack, created["session_id"], status="complete", payment_status="paid")
    assert terminal_events(await stack.history(created["session_id"])) == ["completed"]
    lines.append(
        "stripe: completion webhook held back, merchant expire meanwhile -> 409 "
        "payment_completed (Stripe refused to expire a paid session); the late webhook "
        "then completes it (1 terminal event)"
    )
    counts = await _idle(stack)
    report("webhooks delayed past expiry", [*lines, f"inbox {counts}", f"duration {clock():.1f} s"])


def _stripe_sign(secret: str, body: bytes, stamp: int) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={stamp},v1={mac}"}


def _forgeries(provider: str, genuine: Delivery, secret: str) -> dict[str, dict[str, Any]]:
    """Forged and stale variants of a genuine delivery: name -> body and headers."""
    body, now = genuine.body, int(time.time())
    tampered = body.replace(b'"', b' "', 1)  # same JSON, other bytes
    wrong = SecretStr("whsec_not_the_secret")
    if provider == "stripe":
        return {
            "zero signature": {
                "body": body,
                "headers": {"Stripe-Signature": f"t={now},v1={'0' * 64}"},
            },
            "wrong secret": {"body": body, "headers": _stripe_sign("whsec_wrong", body, now)},
            "tampered body": {"body": tampered, "headers": _stripe_sign(secret, body, now)},
            "stale (1 h old, valid MAC)": {
                "body": body,
                "headers": _stripe_sign(secret, body, now - 3600),
            },
            "stale (6 min old, valid MAC)": {
                "body": body,
                "headers": _stripe_sign(secret, body, now - 360),
            },
            "future (1 h ahead)": {"body": body, "headers": _stripe_sign(secret, body, now + 3600)},
            "no signature": {"body": body, "headers": {}},
        }
    if provider == "polar":
        msg = genuine.headers["webhook-id"]
        key = SecretStr(secret)
        return {
            "wrong secret": {"body": body, "headers": polar_sign(wrong, msg, now, body)},
            "tampered body": {"body": tampered, "headers": polar_sign(key, msg, now, body)},
            "stale (1 h old, valid MAC)": {
                "body": body,
                "headers": polar_sign(key, msg, now - 3600, body),
            },
            "future (1 h ahead)": {"body": body, "headers": polar_sign(key, msg, now + 3600, body)},
            "no signature": {"body": body, "headers": {"webhook-id": msg}},
        }
    key = SecretStr(secret)
    return {  # lomi signs the body only: no timestamp, so no staleness to test
        "wrong secret": {"body": body, "headers": {"X-Lomi-Signature": lomi_sign(wrong, body)}},
        "tampered body": {"body": tampered, "headers": {"X-Lomi-Signature": lomi_sign(key, body)}},
        "no signature": {"body": body, "headers": {}},
    }


async def test_forged_and_stale_webhooks_are_refused_and_stored_nowhere(stack):
    clock = Clock()
    secrets = {
        "stripe": stack.fleet.stripe.webhook_secret,
        "polar": stack.fleet.polar._secret.get_secret_value(),
        "lomi": stack.fleet.lomi._secret.get_secret_value(),
    }
    refused: Counter[str] = Counter()
    lines = []
    for provider, fields in (("stripe", STRIPE), ("polar", POLAR), ("lomi", LOMI)):
        created = await _create(stack, provider, fields)
        inbox_before = await stack.inbox_rows()
        sim = _sim(stack, provider)
        url, sim.webhooks.url = sim.webhooks.url, None  # the genuine ones are held back
        await sim.pay(created["provider_session_id"])
        sim.webhooks.url = url
        genuine = _deliveries(sim, created["provider_session_id"], created["session_id"])
        for delivery in genuine:
            delivery.headers = dict(delivery.sign(delivery.body))  # signed now, not sent
            variants = _forgeries(provider, delivery, secrets[provider])
            for name, variant in variants.items():
                response = await _post(stack, provider, variant["body"], variant["headers"])
                assert response.status_code == 400, (provider, name, response.text)
                assert response.json()["code"] == "webhook_rejected"
                refused[provider] += 1
        assert await stack.inbox_rows() == inbox_before  # nothing stored
        history = await stack.history(created["session_id"])
        assert [r.event.type for r in history] == ["requested", "routed", "provider_session_opened"]
        # the genuine ones still go through: the refusals were about the forgeries only
        for delivery in genuine:
            await sim.webhooks.redeliver(delivery.delivery_id)
        await _status(stack, created["session_id"], status="complete", payment_status="paid")
        assert terminal_events(await stack.history(created["session_id"])) == ["completed"]
        lines.append(
            f"{provider}: {refused[provider]} forged/stale deliveries for {len(genuine)} "
            f"genuine event(s) ({', '.join(variants)}): all 400 webhook_rejected, nothing stored, "
            "no event appended; then the genuine one completed the session"
        )
        await _idle(stack)
    report(
        "forged and stale webhooks",
        [*lines, f"total refused: {sum(refused.values())}", f"duration {clock():.1f} s"],
    )
