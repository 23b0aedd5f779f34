"""End to end: sessions settle through the provider's own ids and through reconciliation.

Real NATS, real Postgres, the simulators over HTTP. Each provider's webhook goes out in
its real shape with *none* of our metadata (``echo_metadata = False`` empties every
``metadata`` object before signing), so only the reference recorded when the provider
session opened can tell which session was paid. Lost webhooks (the simulators' drop
fault) are healed by reconciliation, which runs here every 0.2 s after 0.5 s of quiet.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from typer.testing import CliRunner

from events.values import Customer, Mode, Provider, RequestedAmount, SessionUrls
from orchestrator.bootstrap import Endpoints, gateway, orchestrator, read_side
from orchestrator.cli import app as cli_app
from orchestrator.providers.base import OpenRequest
from orchestrator.sandbox.fleet import SandboxFleet
from tests.support.apps import session_where, settings_for
from tests.support.builders import new_session_id
from tests.support.waiting import wait_until


@asynccontextmanager
async def _running(nats_url, database_url, stream_names, **reconcile):
    settings = settings_for(
        stream_names,
        api_auth="disabled",
        http_port=0,
        settlement_interval_seconds=0.2,
        **reconcile,
    )
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    async with (
        SandboxFleet() as fleet,
        orchestrator(settings, nats_url, providers=fleet.providers),
        read_side(settings, endpoints, serve_http=False) as read,
        gateway(settings, endpoints, read, fleet.providers) as gw,
        httpx.AsyncClient(base_url=gw.http_url, timeout=15) as http,
    ):
        fleet.point_webhooks_at(gw.http_url)
        for simulator in fleet.simulators.values():
            simulator.echo_metadata = False
        yield fleet, gw, http


@pytest.fixture
async def system(nats_url, database_url, stream_names):
    """Reconciliation every 0.2 s after 0.5 s of quiet; back-off at most 0.5 s."""
    async with _running(
        nats_url,
        database_url,
        stream_names,
        reconcile_interval_seconds=0.2,
        reconcile_quiet_seconds=0.5,
        reconcile_backoff_max_seconds=0.5,
    ) as running:
        yield running


@pytest.fixture
async def system_without_rounds(nats_url, database_url, stream_names):
    """Reconciliation inside the gateway only once, at start: the CLI's rounds are alone."""
    async with _running(
        nats_url, database_url, stream_names, reconcile_interval_seconds=3600
    ) as running:
        yield running


def create_body(**overrides):
    body = {
        "session_id": new_session_id(),
        "currency": "GBP",
        "amount": 4997,
        "customer": {"email": "mo@example.test", "country": "GB"},
        "urls": {"success_url": "https://shop.test/ok", "cancel_url": "https://shop.test/no"},
    }
    return body | overrides


def _last_webhook_body(simulator) -> dict:
    return json.loads(simulator.webhooks.deliveries[-1].body)


async def _create(http, **overrides):
    response = await http.post("/v1/checkout-sessions", json=create_body(**overrides))
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_stripe_webhook_without_our_metadata_settles_through_the_provider_reference(
    system_without_rounds,
):
    fleet, gw, http = system_without_rounds
    created = await _create(http)
    assert created["provider"] == "stripe"
    await fleet.stripe.pay(created["provider_session_id"])
    sent = _last_webhook_body(fleet.stripe)["data"]["object"]
    assert sent["id"] == created["provider_session_id"]
    assert sent["metadata"] == {}  # nothing of ours to correlate by
    paid = await session_where(http, created["session_id"], status="complete")
    assert paid["payment_status"] == "paid"
    assert paid["amounts"]["total"] == 4997
    assert await _inbox_status(gw, fleet.stripe.webhooks.deliveries[-1].event_id) == "done"


async def test_a_polar_webhook_without_our_metadata_settles_through_the_provider_reference(
    system_without_rounds,
):
    fleet, gw, http = system_without_rounds
    created = await _create(http, currency="USD", metadata={"product_type": "digital"})
    assert created["provider"] == "polar"
    await fleet.polar.pay(created["provider_session_id"])
    assert all(
        json.loads(d.body)["data"].get("metadata") in ({}, None)
        for d in fleet.polar.webhooks.deliveries
    )
    paid = await session_where(http, created["session_id"], status="complete")
    assert paid["payment_status"] == "paid"
    statuses = {await _inbox_status(gw, d.event_id) for d in fleet.polar.webhooks.deliveries}
    assert "done" in statuses
    assert "unresolved" not in statuses


async def test_a_lomi_payment_row_settles_with_lomis_gross_amount(system_without_rounds):
    """lomi's PAYMENT_SUCCEEDED names no checkout session; with our metadata echoed in the
    transaction it completes at once, for the transaction's ``gross_amount``."""
    fleet, gw, http = system_without_rounds
    fleet.lomi.echo_metadata = True
    created = await _create(
        http, currency="XOF", amount=5000, customer={"email": "a@b.sn", "country": "SN"}
    )
    assert created["provider"] == "lomi"
    await fleet.lomi.pay(created["provider_session_id"])
    row = _last_webhook_body(fleet.lomi)["data"]
    assert "checkout_session_id" not in row
    assert row["gross_amount"] == 5000.0
    paid = await session_where(http, created["session_id"], status="complete")
    assert (paid["amounts"]["total"], paid["currency"]) == (5000, "XOF")
    assert await _inbox_status(gw, fleet.lomi.webhooks.deliveries[-1].event_id) == "done"


async def test_a_lomi_payment_without_our_metadata_settles_by_reconciliation(system):
    """Neither a provider id nor our metadata: the row is held unresolved, and the
    reconciliation sweep settles the session from lomi's own state."""
    fleet, gw, http = system
    created = await _create(
        http, currency="XOF", amount=5000, customer={"email": "a@b.sn", "country": "SN"}
    )
    await fleet.lomi.pay(created["provider_session_id"])
    await wait_until(lambda: _held_unresolved(gw))
    paid = await session_where(http, created["session_id"], status="complete")
    assert (paid["payment_status"], paid["amounts"]["total"]) == ("paid", 5000)


async def _inbox_status(gw, event_id):
    async with gw.processor._pool.acquire() as conn:
        return await conn.fetchval("SELECT status FROM webhook_inbox WHERE event_id = $1", event_id)


async def _held_unresolved(gw):
    return (await gw.inbox.counts()).get("unresolved")


async def test_a_webhook_naming_an_unknown_provider_id_is_held_unresolved_with_a_2xx(
    system, nats_url, database_url
):
    fleet, gw, _ = system
    stranger = await fleet.providers[Provider.STRIPE].open_session(
        OpenRequest(
            session_id=new_session_id(),
            attempt=1,
            mode=Mode.PAYMENT,
            amount=RequestedAmount(currency="GBP", amount=1200),
            customer=Customer(email="x@example.test"),
            urls=SessionUrls(success_url="https://shop.test/ok"),
        )
    )  # opened at Stripe, never by us: its id names no session of ours
    await fleet.stripe.pay(stranger.provider_session_id)
    delivery = fleet.stripe.webhooks.deliveries[-1]
    assert [a.status_code for a in delivery.attempts] == [200]  # held, so acknowledged
    await wait_until(lambda: _held_unresolved(gw))
    (held,) = await gw.inbox.unresolved()
    assert (held.provider, held.event_id) == ("stripe", delivery.event_id)
    env = {"NATS_URL": nats_url, "DATABASE_URL": database_url, "COLUMNS": "200"}
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, ["webhooks", "status"], env=env)
    assert result.exit_code == 0, result.output
    assert "unresolved" in result.output
    assert delivery.event_id in result.output


# --- reconciliation -----------------------------------------------------------------------


async def _log_rows(gw, session_id):
    async with gw.processor._pool.acquire() as conn:
        return await conn.fetch(
            "SELECT * FROM reconciliation_log WHERE session_id = $1 ORDER BY id", session_id
        )


@pytest.mark.parametrize(
    ("simulator", "overrides"),
    [
        ("stripe", {}),
        ("polar", {"currency": "USD", "metadata": {"product_type": "digital"}}),
    ],
)
async def test_a_lost_webhook_is_healed_by_reconciliation_within_its_period(
    system, simulator, overrides
):
    fleet, gw, http = system
    sim = getattr(fleet, simulator)
    created = await _create(http, **overrides)
    assert created["provider"] == simulator
    sim.faults.set(drop_webhooks_next=10)
    paid_at = time.monotonic()
    await sim.pay(created["provider_session_id"])
    assert sim.faults.dropped_webhooks >= 1
    assert not [d for d in sim.webhooks.deliveries if d.attempts]  # nothing reached us
    paid = await session_where(http, created["session_id"], status="complete")
    healed_after = time.monotonic() - paid_at
    assert paid["payment_status"] == "paid"
    # quiet 0.5 s + period 0.2 s, plus the time a round and the projection take
    assert healed_after < 0.5 + 0.2 + 3.0, healed_after
    (row,) = await _log_rows(gw, created["session_id"])
    assert (row["ours"], row["theirs"], row["action"]) == ("open", "complete", "complete")
    assert row["provider_session_id"] == created["provider_session_id"]
    assert not row["dry_run"]


async def test_reconciliation_against_an_unreachable_provider_changes_nothing_and_retries(
    system,
):
    fleet, gw, http = system
    created = await _create(http)
    fleet.stripe.faults.set(drop_webhooks_next=10)
    await fleet.stripe.pay(created["provider_session_id"])
    fleet.stripe.faults.set(error_next=10_000, error_status=503)

    async def retried():
        rows = await _log_rows(gw, created["session_id"])
        return len(rows) >= 2 and all(r["action"] == "retry_later" for r in rows)

    await wait_until(retried)
    still = (await http.get(f"/v1/checkout-sessions/{created['session_id']}")).json()
    assert still["status"] == "open"  # unreachable: nothing changed meanwhile
    fleet.stripe.faults.reset()
    paid = await session_where(http, created["session_id"], status="complete")
    assert paid["payment_status"] == "paid"
    assert (await _log_rows(gw, created["session_id"]))[-1]["action"] == "complete"


async def test_the_reconcile_command_reports_in_a_dry_run_and_settles_without_one(
    system_without_rounds, nats_url, database_url, stream_names, tmp_path
):
    fleet, gw, http = system_without_rounds
    created = await _create(http)
    await session_where(http, created["session_id"], status="open")  # projected: listed
    fleet.stripe.faults.set(drop_webhooks_next=10)
    await fleet.stripe.pay(created["provider_session_id"])
    stripe = fleet.stripe.adapter_config()
    env = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "CHECKOUT_DATA_DIR": str(tmp_path),
        "CHECKOUT_EVENTS_STREAM": stream_names.stream,
        "CHECKOUT_EVENTS_PREFIX": stream_names.events_prefix,
        "CHECKOUT_COMMANDS_STREAM": stream_names.commands_stream,
        "CHECKOUT_COMMANDS_PREFIX": stream_names.commands_prefix,
        "CHECKOUT_RECONCILE_QUIET_SECONDS": "0",
        "STRIPE_API_KEY": stripe.api_key.get_secret_value(),
        "STRIPE_WEBHOOK_SECRET": stripe.webhook_secret.get_secret_value(),
        "STRIPE_API_BASE": stripe.api_base,
        "COLUMNS": "250",
    }

    async def cli(*args):
        result = await asyncio.to_thread(CliRunner().invoke, cli_app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    dry = await cli("reconcile", "--dry-run")
    assert "would_complete" in dry
    assert created["session_id"] in dry
    still = (await http.get(f"/v1/checkout-sessions/{created['session_id']}")).json()
    assert still["status"] == "open"  # a dry run sends nothing
    done = await cli("reconcile", "--history", "5")
    assert "settled 1" in done
    paid = await session_where(http, created["session_id"], status="complete")
    assert paid["payment_status"] == "paid"
    actions = [r["action"] for r in await _log_rows(gw, created["session_id"])]
    assert actions == ["would_complete", "complete"]


# --- requests the real APIs accept ------------------------------------------------------


async def test_our_expiry_at_lomi_is_enforced_by_the_orchestrator(system):
    """lomi's create schema has no ``expires_at`` (it keeps its own 60 minutes): the reply
    says the orchestrator enforces ours, and the sweeper closes the session then."""
    fleet, _, http = system
    expires = datetime.now(UTC) + timedelta(seconds=2)
    created = await _create(
        http,
        currency="XOF",
        amount=5000,
        customer={"email": "a@b.sn", "country": "SN"},
        expires_at=expires.isoformat(),
    )
    assert created["provider"] == "lomi"
    assert created["expiry_enforced_by"] == "orchestrator"
    assert abs(datetime.fromisoformat(created["expires_at"]) - expires) < timedelta(seconds=1)
    at_lomi = fleet.lomi.describe(created["provider_session_id"])
    assert at_lomi["status"] == "open"  # lomi would keep it open for 60 minutes
    await session_where(http, created["session_id"], status="expired")
