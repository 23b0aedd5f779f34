"""Erasure in an immutable log (docs/privacy.md), end to end on the sandboxed system.

Two customers buy; one pays; one is forgotten. Then everything the run left behind is
scanned for the forgotten customer's email, name and address: every message of the event
and command streams (headers and payload), every row of every table of the database,
every log record (DEBUG, every logger) and every exported span. Zero hits, before and
after a rebuild of every read model; the other customer's sessions keep their data and the
provider totals do not move.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from events.catalog import CheckoutRequested, CustomerForgotten
from events.privacy import ErasedCustomer, SealedCustomer
from events.values import Customer
from orchestrator.bootstrap import connect_nats, event_source
from orchestrator.client import CheckoutClient
from orchestrator.telemetry import build_telemetry, instrumented
from projections import PROJECTION_NAMES, rebuild
from tests.support.apps import Stack, running_stack, session_where
from tests.support.builders import create_body
from tests.support.capture import database_dump, stored_messages
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ALICE = {
    "email": "alice.forgotten@example.test",
    "name": "Alice Zéphyrine Forgotten",
    "phone": "+447700900123",
    "reference": "crm-alice-7731",
    "country": "GB",
    "address": {"line1": "17 Tulip Mews", "city": "Hebden Bridge", "country": "GB"},
}
BOB = {
    "email": "bob.kept@example.test",
    "name": "Bob Kept",
    "country": "GB",
    "address": {"line1": "3 Harbour Row", "city": "Whitby", "country": "GB"},
}
SECRETS_OF_ALICE = (
    ALICE["email"],
    "alice.forgotten",  # the local part alone, as a JSON escape or a partial copy would hold it
    "Zéphyrine",
    "Zephyrine",
    "Z\\u00e9phyrine",
    ALICE["phone"],
    ALICE["reference"],
    "Tulip Mews",
    "Hebden Bridge",
    "loyalty-4411",  # a metadata value declared personal
)


def _hits(texts: list[str]) -> list[str]:
    return [t[:300] for t in texts if any(s.lower() in t.lower() for s in SECRETS_OF_ALICE)]


def _spans(exporter: InMemorySpanExporter) -> list[str]:
    found = []
    for span in exporter.get_finished_spans():
        found.append(f"{span.name} {dict(span.attributes or {})!r}")
        found += [f"{e.name} {dict(e.attributes or {})!r}" for e in span.events]
    return found


async def _create(stack: Stack, customer: dict[str, Any], **metadata: str) -> dict[str, Any]:
    body = create_body(customer=customer, metadata={"order": "A-1", **metadata})
    response = await stack.http.post("/v1/checkout-sessions", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def _stream_texts(stack: Stack) -> list[str]:
    layout = stack.settings.layout()
    return [
        *await stored_messages(stack.nats_url, layout.events_stream),
        *await stored_messages(stack.nats_url, layout.commands_stream),
    ]


async def _leftovers(stack: Stack, exporter: InMemorySpanExporter, logs: list[str]) -> dict:
    return {
        "stream": _hits(await _stream_texts(stack)),
        "database": _hits(await database_dump(stack.database_url)),
        "logs": _hits(logs),
        "spans": _hits(_spans(exporter)),
    }


async def test_a_forgotten_customer_leaves_no_personal_data_anywhere(  # noqa: PLR0915 - one story
    nats_url, database_url, stream_names, every_log_record
):
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(span_exporters=[exporter])
    with instrumented(telemetry):
        async with running_stack(
            nats_url,
            database_url,
            stream_names,
            telemetry=telemetry,
            personal_metadata_keys=("loyalty_id",),
        ) as stack:
            alice_paid = await _create(stack, ALICE, loyalty_id="loyalty-4411")
            alice_open = await _create(stack, {**ALICE, "reference": None})
            bob = await _create(stack, BOB, loyalty_id="loyalty-0007")
            await stack.fleet.stripe.pay(alice_paid["provider_session_id"])
            await stack.fleet.stripe.pay(bob["provider_session_id"])
            for created in (alice_paid, bob):
                await session_where(stack.http, created["session_id"], status="complete")
            await session_where(stack.http, alice_open["session_id"], status="open")

            # sealed at rest: the stream never held Alice in clear, even before the forget
            assert _hits(await _stream_texts(stack)) == []
            # ... and the read model served her data while she was a customer
            before = await session_where(
                stack.http, alice_paid["session_id"], customer_email=ALICE["email"]
            )
            assert before["metadata"]["loyalty_id"] == "loyalty-4411"
            totals = (await stack.http.get("/v1/stats/providers")).json()

            response = await stack.http.post(
                "/v1/customers/forget", json={"email": ALICE["email"].upper()}
            )
            assert response.status_code == 200, response.text
            reply = response.json()
            assert reply["status"] == "forgotten"
            assert sorted(reply["sessions"]) == sorted(
                [alice_paid["session_id"], alice_open["session_id"]]
            )
            assert {p["provider_session_id"] for p in reply["provider_sessions"]} == {
                alice_paid["provider_session_id"],
                alice_open["provider_session_id"],
            }

            for created in (alice_paid, alice_open):
                erased = await session_where(stack.http, created["session_id"], customer_email=None)
                assert erased["customer"]["kind"] == "erased"
                assert erased["customer"]["country"] == "GB"
                assert "loyalty_id" not in erased["metadata"]
            # amounts and statuses survive: the books still balance
            paid = await session_where(stack.http, alice_paid["session_id"], status="complete")
            assert paid["amounts"]["total"] == before["amounts"]["total"]
            assert (await stack.http.get("/v1/stats/providers")).json() == totals

            # the other customer keeps everything
            kept = await session_where(stack.http, bob["session_id"], customer_email=BOB["email"])
            assert kept["customer"]["subject"].startswith("sub_")
            assert kept["metadata"]["loyalty_id"] == "loyalty-0007"

            # every reader gets the erased marker: the timeline, as_of, the client's history
            timeline = (
                await stack.http.get(f"/v1/checkout-sessions/{alice_paid['session_id']}/events")
            ).json()
            requested = next(e for e in timeline if e["type"] == "requested")
            assert requested["payload"]["customer"]["kind"] == "erased"
            as_of = await stack.http.get(
                f"/v1/checkout-sessions/{alice_paid['session_id']}",
                params={"as_of": "2100-01-01T00:00:00Z"},
            )
            assert as_of.status_code == 200, as_of.text
            assert as_of.json()["customer"].get("email") is None
            personal = stack.read.personal
            assert personal is not None
            client = CheckoutClient(stack.gateway.client._nc, stack.settings.layout(),
                                    personal=personal.opener)  # fmt: skip
            history = await client.history(alice_paid["session_id"])
            first = history[0].event
            assert isinstance(first, CheckoutRequested)
            assert isinstance(first.customer, ErasedCustomer)
            bobs = (await client.history(bob["session_id"]))[0].event
            assert isinstance(bobs, CheckoutRequested)
            assert isinstance(bobs.customer, Customer)
            assert bobs.customer.email == BOB["email"]

            # the stream itself: sealed customers and one customer_forgotten per subject
            store = stack.store
            raw = (await store.load(alice_paid["session_id"])).events[0].event
            assert isinstance(raw, CheckoutRequested)
            assert isinstance(raw.customer, SealedCustomer)
            assert raw.subject is not None
            assert reply["subjects"] == [raw.subject]
            forgotten = (await store.load(raw.subject)).events
            assert [type(e.event) for e in forgotten] == [CustomerForgotten]

            assert await _leftovers(stack, exporter, every_log_record.lines) == {
                "stream": [], "database": [], "logs": [], "spans": [],
            }  # fmt: skip

            # idempotent, and an unknown customer changes nothing but the request record
            head = await _stream_size(stack)
            for body in ({"email": ALICE["email"]}, {"customer_reference": "nobody-at-all"}):
                again = await stack.http.post("/v1/customers/forget", json=body)
                assert again.status_code == 200, again.text
                assert again.json()["status"] == "not_found"
            assert await _stream_size(stack) == head

            # a rebuild after the forget brings back no personal data (and Bob's, opened)
            side = stack.read
            for name in PROJECTION_NAMES:
                await rebuild(
                    name,
                    nc=side.nc,
                    pool=side.pool,
                    dsn=stack.database_url,
                    source=event_source(stack.settings),
                    poll=0.05,
                    personal=personal.opener,
                )
            assert _hits(await database_dump(stack.database_url)) == []
            kept = await session_where(stack.http, bob["session_id"], customer_email=BOB["email"])
            assert (await stack.http.get("/v1/stats/providers")).json() == totals


async def _stream_size(stack: Stack) -> int:
    nc = await connect_nats(stack.nats_url, "privacy-test")
    try:
        info = await nc.jetstream().stream_info(stack.settings.layout().events_stream)
        return int(info.state.messages)
    finally:
        await nc.drain()


async def test_bad_forget_requests_are_refused_and_change_nothing(
    nats_url, database_url, stream_names
):
    async with running_stack(nats_url, database_url, stream_names) as stack:
        for body in (
            {},
            {"email": "not-an-email"},
            {"email": "a@example.test", "customer_reference": "both"},
            {"customer_reference": "x\u0000y"},
            {"email": 7},
            {"email": "a@example.test", "extra": 1},
        ):
            response = await stack.http.post("/v1/customers/forget", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["code"] == "validation_failed"
            assert "not-an-email" not in json.dumps(response.json()["errors"])
        assert await _stream_size(stack) == 0
        async with stack.read.pool.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM forget_requests") == 0


async def test_what_arrives_for_a_forgotten_customer_is_not_kept(
    nats_url, database_url, stream_names
):
    """A payment that completes after its customer was forgotten: the provider's copy of
    the customer is stored erased, never in clear, and the session still completes."""
    async with running_stack(nats_url, database_url, stream_names) as stack:
        created = await _create(stack, ALICE)
        reply = await stack.gateway.client.forget_customer(customer_reference=ALICE["reference"])
        assert reply.status == "forgotten"
        await stack.fleet.stripe.pay(created["provider_session_id"])
        paid = await session_where(stack.http, created["session_id"], status="complete")
        assert paid["customer"]["kind"] == "erased"

        async def completed() -> Any:
            events = (await stack.store.load(created["session_id"])).events
            return next((e.event for e in events if e.event.type == "completed"), None)

        event = await wait_until(completed, 15, what="the completed event")
        assert isinstance(event.customer, ErasedCustomer | None)
        assert _hits(await _stream_texts(stack)) == []
        # the provider's webhook, which named her, is not kept in the inbox either
        assert [row["outcome"] for row in await stack.inbox_rows()]
        assert _hits(await database_dump(stack.database_url)) == []


async def test_nothing_is_appended_in_clear_while_the_key_store_is_down(
    nats_url, database_url, stream_names
):
    async with running_stack(nats_url, database_url, stream_names) as stack:
        personal = stack.read.personal
        assert personal is not None
        await personal.keyring.pool.close()  # the key store is unreachable
        body = create_body(customer=ALICE)
        response = await stack.http.post("/v1/checkout-sessions", json=body)
        # the command is retried by the queue (an infrastructure fault), never stored clear
        # in the event log (the work queue holds the command itself until it is handled:
        # docs/privacy.md, "what is not sealed")
        assert response.status_code == 202, response.text
        assert response.json()["code"] == "queued"
        assert (await stack.store.load(body["session_id"])).events == ()
        events = stack.settings.layout().events_stream
        assert _hits(await stored_messages(stack.nats_url, events)) == []
