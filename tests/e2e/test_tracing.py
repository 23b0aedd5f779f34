"""One trace per checkout: from the HTTP request through routing, the provider call and the
append to the read-model commit; a later payment webhook's trace links back to it."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.telemetry import build_telemetry, instrumented
from tests.support.apps import running_stack, session_where
from tests.support.builders import create_body
from tests.support.waiting import wait_until


@pytest.fixture
async def traced(nats_url, database_url, stream_names):
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(span_exporters=[exporter])
    with instrumented(telemetry):
        async with running_stack(
            nats_url, database_url, stream_names, telemetry=telemetry
        ) as stack:
            yield stack.fleet, stack.http, exporter
    telemetry.shutdown()


def _in_trace(exporter, trace_id):
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]


async def test_a_checkout_is_one_trace_from_http_to_the_read_model(traced):
    _fleet, http, exporter = traced
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    await session_where(http, created["session_id"], status="open")
    request = next(
        s
        for s in exporter.get_finished_spans()
        if s.kind.name == "SERVER"
        and s.attributes.get("http.route") == "/v1/checkout-sessions"
        and s.attributes.get("http.request.method", s.attributes.get("http.method")) == "POST"
    )
    trace_id = request.context.trace_id

    async def whole_trace():
        names = {s.name for s in _in_trace(exporter, trace_id)}
        wanted = {"checkout.command", "checkout.route", "checkout.provider.open",
                  "checkout.events.append", "projection.committed"}  # fmt: skip
        return names if wanted <= names else None

    names = await wait_until(whole_trace, 15)
    # the provider call went over HTTP, traced by the httpx instrumentation (Stripe's SDK)
    spans = _in_trace(exporter, trace_id)
    assert any(s.kind.name == "CLIENT" and "POST" in s.name for s in spans), names
    # low-cardinality names: the session id is an attribute, never part of a name
    assert all(created["session_id"] not in s.name for s in spans)
    command = next(s for s in spans if s.name == "checkout.command")
    assert command.attributes["checkout.session.id"] == created["session_id"]
    # the stored events carry the trace
    events = (await http.get(f"/v1/checkout-sessions/{created['session_id']}/events")).json()
    assert {e["trace_id"] for e in events} == {format(trace_id, "032x")}


async def test_a_payment_webhook_trace_links_to_the_checkout_trace(traced):
    fleet, http, exporter = traced
    created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    await session_where(http, created["session_id"], status="open")
    events = (await http.get(f"/v1/checkout-sessions/{created['session_id']}/events")).json()
    checkout_trace = int(events[0]["trace_id"], 16)
    await fleet.stripe.pay(created["provider_session_id"])
    await session_where(http, created["session_id"], status="complete")

    def completion_span():
        for span in exporter.get_finished_spans():
            if (
                span.name == "checkout.command"
                and span.attributes.get("checkout.command.type") == "complete"
            ):
                return span
        return None

    async def found():
        return completion_span()

    span = await wait_until(found, 15)
    assert span.context.trace_id != checkout_trace
    assert checkout_trace in {link.context.trace_id for link in span.links}
