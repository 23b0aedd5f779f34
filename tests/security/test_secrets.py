"""No secret leaks: a sandboxed run with known secrets, scanned everywhere it could land.

Everything is captured: every log record (DEBUG, every logger), every span attribute and
event attribute (an in-memory exporter), every event stored in the stream (data and
headers), every error body the HTTP API returned. None may contain a configured secret
(provider keys, webhook secrets, API keys) or a client secret a provider returned (those
belong to the create reply only); customer emails stay out of logs and spans.
"""

from __future__ import annotations

import json
import sys

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, SecretStr

from orchestrator.bootstrap import Endpoints, gateway, orchestrator, read_side
from orchestrator.http.api_keys import ApiKeys, Scope
from orchestrator.sandbox.fleet import _SANDBOX_SECRET, SandboxFleet
from orchestrator.telemetry import build_telemetry, instrumented
from tests.support.apps import session_where, settings_for
from tests.support.builders import create_body
from tests.support.capture import stored_messages


def _secrets_of(config: BaseModel) -> set[str]:
    return {
        value.get_secret_value()
        for value in (getattr(config, name) for name in type(config).model_fields)
        if isinstance(value, SecretStr)
    }


def _without(text: str, urls: set[str]) -> str:
    for url in urls:
        text = text.replace(url, "<checkout_url>")
    return text


@pytest.mark.slow
async def test_no_secret_and_no_email_leaks_anywhere(  # noqa: C901, PLR0915 - one story
    nats_url, database_url, stream_names, every_log_record
):
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(span_exporters=[exporter])
    settings = settings_for(
        stream_names, http_port=0, api_auth="required", settlement_interval_seconds=0.2
    )
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    errors: list[str] = []
    replies: list[str] = []
    client_secrets: set[str] = set()
    emails: set[str] = set()
    with instrumented(telemetry):
        async with (
            SandboxFleet() as fleet,
            orchestrator(settings, nats_url, providers=fleet.providers, telemetry=telemetry),
            read_side(settings, endpoints, serve_http=False, telemetry=telemetry) as read,
            gateway(settings, endpoints, read, fleet.providers, telemetry=telemetry) as gw,
        ):
            fleet.point_webhooks_at(gw.http_url)
            keys = ApiKeys(read.pool)
            write = (await keys.create(Scope.WRITE, "leak test")).plaintext
            reader = (await keys.create(Scope.READ, "leak test (read)")).plaintext
            configured = {_SANDBOX_SECRET, write, reader}
            for simulator in fleet.simulators.values():
                configured |= _secrets_of(simulator.adapter_config())
            auth = {"authorization": f"Bearer {write}"}
            async with httpx.AsyncClient(base_url=gw.http_url, timeout=20, headers=auth) as http:

                async def send(method: str, path: str, **kwargs) -> httpx.Response:
                    response = await http.request(method, path, **kwargs)
                    (replies if response.is_success else errors).append(response.text)
                    return response

                async def create(n: int, **overrides) -> dict:
                    email = f"leak.check.{n}@example.test"
                    emails.add(email)
                    body = create_body(**overrides)
                    body["customer"] = {**body["customer"], "email": email}
                    response = await send("POST", "/v1/checkout-sessions", json=body)
                    assert response.status_code == 201, response.text
                    created = response.json()
                    if created.get("client_secret"):
                        client_secrets.add(created["client_secret"])
                    return created

                hosted = await create(1)
                embedded = await create(
                    2, ui_mode="embedded", urls={"return_url": "https://shop.test/r"}
                )
                assert embedded["provider"] == "stripe"
                assert embedded["client_secret"], "an embedded checkout has a client secret"
                fleet.stripe.faults.set(error_next=5, error_status=503)  # Stripe down: a fallback
                polar = await create(3, currency="USD", ui_mode="embedded")
                fleet.stripe.faults.reset()
                lomi = await create(4, currency="XOF", amount=5000, customer={"country": "SN"})
                expiring = await create(5)
                canceling = await create(6, currency="EUR", customer={"country": "DE"})
                for created in (hosted, embedded, polar, lomi):
                    simulator = fleet.simulators[created["provider"]]
                    await simulator.pay(created["provider_session_id"])
                await fleet.simulators[expiring["provider"]].expire(expiring["provider_session_id"])
                await send("POST", f"/v1/checkout-sessions/{canceling['session_id']}/cancel")
                for created in (hosted, embedded, polar, lomi):
                    await session_where(http, created["session_id"], status="complete")
                await session_where(http, expiring["session_id"], status="expired")
                # errors, of every kind we can provoke
                await send("POST", "/v1/checkout-sessions", json=create_body(currency="ZZZ"))
                await send("POST", f"/v1/checkout-sessions/{hosted['session_id']}/cancel")
                await send("GET", "/v1/checkout-sessions/cs_nope")
                await send("POST", "/v1/webhooks/stripe", content=b"{}", headers={
                    "stripe-signature": f"t=1,v1={'0' * 64}"})  # fmt: skip
                await send("POST", "/v1/webhooks/polar", content=b"{}")
                await send("GET", "/v1/checkout-sessions", headers={"authorization": "Bearer x"})
                await send(
                    "POST", "/v1/checkout-sessions", headers={"authorization": f"Bearer {reader}"}
                )
                for created in (hosted, embedded, polar, lomi, expiring, canceling):
                    sid = created["session_id"]
                    for path in ("", "/events", "/routing-decisions"):
                        await send("GET", f"/v1/checkout-sessions/{sid}{path}")
                await send("GET", "/v1/checkout-sessions")
            stored = await stored_messages(nats_url, stream_names.stream)
    telemetry.shutdown()

    spans = [
        f"{span.name} {dict(span.attributes or {})!r} "
        + " ".join(f"{e.name} {dict(e.attributes or {})!r}" for e in span.events)
        + f" {span.status.description or ''} {dict(span.resource.attributes)!r}"
        for span in exporter.get_finished_spans()
    ]
    logs = every_log_record.lines
    assert spans
    assert logs
    assert stored
    assert errors
    sys.stdout.write(
        f"scanned {len(logs)} log records, {len(spans)} spans, {len(stored)} stored events, "
        f"{len(errors)} error bodies, {len(replies)} replies for {len(configured)} configured "
        f"secrets, {len(client_secrets)} client secrets and {len(emails)} emails\n"
    )
    # Polar's checkout URL embeds the checkout's client secret (`.../checkout/<client_secret>`):
    # the URL is what the customer is sent to, so the event keeps it; nowhere else.
    urls = {c["checkout_url"] for c in (polar,) if c["provider"] == "polar"}
    assert urls
    stored = [_without(text, urls) for text in stored]
    leaks = []
    for where, texts in (("log", logs), ("span", spans), ("event", stored), ("error", errors)):
        for secret in configured | client_secrets:
            leaks += [(where, secret[:12], text[:300]) for text in texts if secret in text]
    for where, texts in (("log", logs), ("span", spans)):
        for email in emails:
            leaks += [(where, email, text[:300]) for text in texts if email in text]
    assert not leaks, json.dumps(leaks, indent=1)
    # a client secret is in its create reply and nowhere else the API answered
    later = [_without(text, urls) for text in replies if '"client_secret"' not in text]
    assert not [s for s in client_secrets for text in later if s in text]
