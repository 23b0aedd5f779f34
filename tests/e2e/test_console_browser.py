"""The console in a real browser (headless Debian chromium driven by Playwright): sign in with
an API key, find a session created through the API, open its timeline and routing, travel
in time, look at providers, projections and a backtest, replay a webhook; no page logs a
browser console error. Real NATS, Postgres, HTTP and provider simulators.

Chromium is the system's (``apt-get install chromium``; never ``playwright install``). Without
it the test is skipped, except under ``CI`` where a missing browser fails.
With ``CHECKOUT_CONSOLE_SCREENSHOTS=docs/console`` it writes the screenshots of
docs/console.md there (else into the test's temporary directory).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from events.values import Provider
from orchestrator.bootstrap import Endpoints, Gateway, gateway, orchestrator, read_side
from orchestrator.http.api_keys import ApiKeys, Scope
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.telemetry import build_telemetry
from tests.support.apps import session_where, settings_for
from tests.support.builders import create_body
from tests.unit.test_routing_backtest import DEFAULT_TEXT

CHROMIUM = os.environ.get("CHECKOUT_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 15_000


def _chromium() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"CI: no chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (required under CI)")
    raise AssertionError  # pragma: no cover - skip raises


@dataclass
class Console:
    gw: Gateway
    fleet: SandboxFleet
    http: httpx.AsyncClient
    keys: ApiKeys
    write_key: str
    read_key: str
    shots: Path
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("CHECKOUT_CONSOLE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def console(nats_url, database_url, stream_names, shots) -> AsyncIterator[Console]:
    settings = settings_for(
        stream_names, api_auth="required", http_port=0, settlement_interval_seconds=0.5,
        api_key_cache_seconds=0.2,
        trace_url_template="http://traces.example/trace/{trace_id}",
    )  # fmt: skip
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    telemetry = build_telemetry()  # nothing exported, but trace ids are made and recorded
    async with (
        SandboxFleet() as fleet,
        orchestrator(settings, nats_url, providers=fleet.providers, telemetry=telemetry) as system,
        read_side(settings, endpoints, serve_http=False, telemetry=telemetry) as read,
        gateway(
            settings, endpoints, read, fleet.providers, telemetry=telemetry, health=system.health
        ) as gw,
    ):
        fleet.point_webhooks_at(gw.http_url)
        keys = ApiKeys(read.pool)
        write = await keys.create(Scope.WRITE, "console test")
        reader = await keys.create(Scope.READ, "console test (read)")
        headers = {"authorization": f"Bearer {write.plaintext}"}
        async with httpx.AsyncClient(base_url=gw.http_url, timeout=15, headers=headers) as http:
            yield Console(gw, fleet, http, keys, write.plaintext, reader.plaintext, shots)


@pytest.fixture
async def browser():
    executable = _chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def _page(browser, console: Console):
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on(
        "console", lambda m: m.type == "error" and console.errors.append(f"{page.url}: {m.text}")
    )
    page.on("pageerror", lambda e: console.errors.append(f"{page.url}: {e}"))
    return context, page


async def _sign_in(page, console: Console, key: str) -> None:
    await page.goto(f"{console.gw.http_url}/console")
    await page.wait_for_url(re.compile(r"/console/login"))
    await page.fill("input[name=api_key]", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(re.compile(r"/console/sessions"))


async def _open_sessions(console: Console) -> tuple[dict, dict]:
    """One GBP checkout paid at Stripe, one USD checkout that fell back to Polar."""
    paid = (await console.http.post("/v1/checkout-sessions", json=create_body())).json()
    await console.fleet.stripe.pay(paid["provider_session_id"])
    await session_where(console.http, paid["session_id"], status="complete")
    console.fleet.stripe.faults.set(error_next=50, error_status=503)
    body = create_body(currency="USD", amount=2500)
    fallback = (await console.http.post("/v1/checkout-sessions", json=body)).json()
    console.fleet.stripe.faults.reset()
    assert fallback["provider"] == "polar", fallback
    await session_where(console.http, fallback["session_id"], provider="polar")
    return paid, fallback


async def _more_sessions(console: Console) -> None:
    """A few more markets, so the pages (and their screenshots) show a mix."""
    markets = [
        ("XOF", "SN", 5000, {}, "pay"),
        ("EUR", "DE", 2500, {}, "pay"),
        ("JPY", "JP", 3200, {}, "expire"),
        ("EUR", "NL", 900, {"product_type": "digital"}, "pay"),
        ("USD", "US", 4900, {}, None),
    ]
    for currency, country, amount, metadata, then in markets:
        customer = {"email": "ops@example.test", "country": country}
        body = create_body(currency=currency, amount=amount, customer=customer, metadata=metadata)
        created = (await console.http.post("/v1/checkout-sessions", json=body)).json()
        simulator = console.fleet.simulators[Provider(created["provider"])]
        if then == "pay":
            await simulator.pay(created["provider_session_id"])
        elif then == "expire":
            await simulator.expire(created["provider_session_id"])


async def _inbox_row_done(console: Console, page) -> None:
    async with asyncio.timeout(15):
        while True:
            await page.goto(f"{console.gw.http_url}/console/webhooks?status=done")
            if await page.locator("#inbox button[data-row]").count():
                return
            await asyncio.sleep(0.2)


async def test_the_console_in_a_browser(console, browser):
    paid, fallback = await _open_sessions(console)
    await _more_sessions(console)
    context, page = await _page(browser, console)

    # sign in: the cookie is opaque, HttpOnly, SameSite=Strict; the key is nowhere in the page
    await _sign_in(page, console, console.write_key)
    cookies = {c["name"]: c for c in await context.cookies()}
    session_cookie = cookies["console_session"]
    assert session_cookie["httpOnly"] is True
    assert session_cookie["sameSite"] == "Strict"
    assert console.write_key not in session_cookie["value"]
    assert console.write_key not in await page.content()

    # sessions: the one created through the API is listed; the rows poll live
    row = page.locator(f"a[href='/console/sessions/{paid['session_id']}']")
    await row.wait_for()
    await page.screenshot(path=console.shots / "sessions.png", full_page=True)
    async with page.expect_response(re.compile(r"/console/sessions/rows")):
        pass  # htmx polls the rows
    await page.select_option("select[name=provider]", "polar")
    await page.click(".filters button[type=submit]")
    await page.locator(f"a[href='/console/sessions/{fallback['session_id']}']").wait_for()
    assert await page.locator(f"a[href='/console/sessions/{paid['session_id']}']").count() == 0

    # a session: timeline, routing explanation with the fallback and why, trace link
    await page.click(f"a[href='/console/sessions/{fallback['session_id']}']")
    await page.locator("#timeline").wait_for()
    timeline = await page.locator("#timeline").inner_text()
    for event in ("requested", "routed", "provider_call_failed", "provider_session_opened"):
        assert event in timeline
    routing = await page.locator("text=fallback").count()
    assert routing >= 1
    assert "stripe" in await page.locator("tr.dropped").first.inner_text()
    trace = page.locator(".trace-id a").first
    assert (await trace.get_attribute("href")).startswith("http://traces.example/trace/")
    await page.screenshot(path=console.shots / "session.png", full_page=True)

    # time travel: right after the first event the session was open, at no provider yet
    await page.locator(".steps a").first.click()
    state = page.locator("#as-of-state")
    await state.wait_for()
    assert "provider none" in await state.inner_text()
    assert await page.locator("#timeline tr.future").count() == 3

    # providers: circuits from the health board, totals with the chart
    await page.goto(f"{console.gw.http_url}/console/providers")
    await page.locator("#circuits").wait_for()
    circuits = await page.locator("#circuits").inner_text()
    assert "stripe" in circuits
    assert "closed" in circuits
    assert await page.locator("svg.chart rect").count() >= 2
    await page.screenshot(path=console.shots / "providers.png", full_page=True)

    # projections: lag per read model and partition
    await page.goto(f"{console.gw.http_url}/console/projections")
    await page.locator("#checkpoints").wait_for()
    assert "sessions" in await page.locator("#checkpoints").inner_text()
    await page.screenshot(path=console.shots / "projections.png", full_page=True)

    await context.close()
    assert console.errors == []


async def test_a_backtest_from_the_console(console, browser):
    await _open_sessions(console)
    await _more_sessions(console)
    context, page = await _page(browser, console)
    await _sign_in(page, console, console.read_key)  # a backtest changes nothing: read scope
    # backtest: Polar first instead of Stripe moves the Stripe checkout
    await page.goto(f"{console.gw.http_url}/console/backtest")
    candidate = DEFAULT_TEXT.replace(
        'name = "default"\nproviders = ["stripe", "polar"]',
        'name = "default"\nproviders = ["polar", "stripe"]',
    )
    await page.fill("textarea[name=rules]", candidate)
    await page.click("#backtest-form button[type=submit]")
    await page.locator("#backtest-report").wait_for()
    assert int(await page.locator("#changed").inner_text()) >= 1
    assert "stripe" in await page.locator("#moves").inner_text()
    await page.screenshot(path=console.shots / "backtest.png", full_page=True)

    await context.close()
    assert console.errors == []


async def test_a_webhook_is_replayed_from_the_console(console, browser):
    paid, _ = await _open_sessions(console)
    await _more_sessions(console)
    context, page = await _page(browser, console)
    await _sign_in(page, console, console.write_key)
    # webhooks: the payment's webhook is done; replay it, it is processed again
    await _inbox_row_done(console, page)
    button = page.locator("#inbox button[data-row]").first
    row_id = await button.get_attribute("data-row")
    await page.screenshot(path=console.shots / "webhooks.png", full_page=True)
    await button.click()
    await page.locator("#replayed").wait_for()
    assert f"Webhook {row_id} queued" in await page.locator("#replayed").inner_text()
    async with asyncio.timeout(15):
        while (await console.gw.inbox.counts()).get("pending", 0):
            await asyncio.sleep(0.1)
    await session_where(console.http, paid["session_id"], status="complete")

    # an action without the session's CSRF token is refused, even with the cookie
    refused = await page.request.post(f"{console.gw.http_url}/console/webhooks/{row_id}/replay")
    assert refused.status == 403
    await context.close()
    assert console.errors == []


async def test_a_read_key_looks_but_cannot_act(console, browser):
    await _open_sessions(console)
    context, page = await _page(browser, console)
    await _sign_in(page, console, console.read_key)
    await page.goto(f"{console.gw.http_url}/console/webhooks")
    await page.locator("#inbox").wait_for()
    assert await page.locator("#inbox button[data-row]").count() == 0
    assert "Replaying needs a write key" in await page.content()
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    refused = await page.request.post(
        f"{console.gw.http_url}/console/webhooks/1/replay", form={"csrf": csrf}
    )
    assert refused.status == 403
    await context.close()
    assert console.errors == []


async def test_a_wrong_key_is_refused_and_a_revoked_one_signs_out(console, browser):
    context, page = await _page(browser, console)
    await page.goto(f"{console.gw.http_url}/console/login")
    await page.fill("input[name=api_key]", "ck_nothing_here")
    await page.click("button[type=submit]")
    await page.locator("#login-failed").wait_for()
    assert await page.locator("nav").count() == 0
    key = await console.keys.create(Scope.READ, "revoked soon")
    await _sign_in(page, console, key.plaintext)
    await console.keys.revoke(key.id)
    async with asyncio.timeout(10):  # the API's key cache forgets it within 0.2 s
        while "/console/login" not in page.url:
            await page.goto(f"{console.gw.http_url}/console/providers")
    await context.close()
    assert console.errors == []
