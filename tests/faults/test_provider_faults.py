"""Fault: the first provider of a route fails (5xx, timeouts, slow answers) under a load of
creates. Promised: every create falls back to the next provider; the failing provider's
circuit opens, so later creates skip it without calling it; once the fault is lifted and
the cool-down has passed, one probe closes the circuit and traffic returns.

Counted at the simulator (its API request counter), and in the recorded `routed` /
`provider_call_failed` events of each session.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from events.values import Provider
from orchestrator import bootstrap
from orchestrator.providers.stripe.client import StripeProvider
from orchestrator.routing.health import BreakerPolicy, BreakerState, HealthBoard
from orchestrator.sandbox.fleet import SandboxFleet
from tests.support.apps import Stack, running_stack
from tests.support.builders import create_body
from tests.support.reports import Clock, report
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.fault, pytest.mark.slow]

TRIP_AFTER = 3  # consecutive failures that open the circuit
COOL_DOWN = 3.0  # seconds open before the half-open probe (production: 30)
STRIPE_TIMEOUT = 1.0  # the Stripe adapter's timeout in this case (production: 30)
LOAD = 30  # creates per fault round
CONCURRENCY = 10


@pytest.fixture
def boards(monkeypatch):
    """The orchestrator's health board, with a short cool-down; kept for the timeline."""
    made: list[HealthBoard] = []
    policy = BreakerPolicy(
        consecutive_failures=TRIP_AFTER, cool_down_seconds=COOL_DOWN, probe_timeout_seconds=5.0
    )

    def board(clock, _configured=None):  # the settings' policy is replaced by the test's
        made.append(HealthBoard(clock, policy))
        return made[-1]

    monkeypatch.setattr(bootstrap, "HealthBoard", board)
    return made


def _providers(fleet: SandboxFleet):
    # no SDK retries: one create is one call at the simulator, so calls can be counted
    stripe = StripeProvider(
        fleet.stripe.adapter_config(timeout_seconds=STRIPE_TIMEOUT, max_network_retries=0)
    )
    return {**fleet.providers, Provider.STRIPE: stripe}


@pytest.fixture
async def stack(nats_url, database_url, stream_names, boards):
    async with running_stack(
        nats_url, database_url, stream_names, adjust_providers=_providers
    ) as running:
        yield running


async def _creates(stack: Stack, n: int) -> list[dict[str, Any]]:
    """``n`` creates at once over HTTP (USD, default rule: stripe, then polar)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> dict[str, Any]:
        async with gate:
            response = await stack.http.post(
                "/v1/checkout-sessions", json=create_body(currency="USD", amount=2500)
            )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _queued_creates(stack: Stack, n: int) -> list[dict[str, Any]]:
    """``n`` creates that the command service takes as one concurrent batch: they queue up
    behind a slow create (lomi answering in 0.5 s), then are fetched together."""
    lomi = stack.fleet.lomi.faults
    lomi.set(latency_seconds=0.5)
    xof = create_body(currency="XOF", amount=5000, customer={"email": "a@b.sn", "country": "SN"})
    calls_before = lomi.api_requests
    blocker = asyncio.create_task(stack.http.post("/v1/checkout-sessions", json=xof))
    # the creates must queue behind the slow one: send them once lomi holds its call
    await wait_until(lambda: lomi.api_requests > calls_before, what="the slow create at lomi")
    try:
        return await _creates(stack, n)
    finally:
        assert (await blocker).status_code == 201
        stack.fleet.lomi.faults.reset()


async def _routing(stack: Stack, created: list[dict[str, Any]]) -> dict[str, int]:
    """Per create: was Stripe tried (and failed), skipped for its circuit, or used?"""
    found = {"tried_failed": 0, "skipped_open": 0, "stripe_ok": 0, "other": 0}
    for reply in created:
        events = [r.event for r in await stack.history(reply["session_id"])]
        routed = next(e for e in events if e.type == "routed")
        failed = [e for e in events if e.type == "provider_call_failed"]
        not_called = [f for f in failed if f.error_code == "circuit_open"]  # type: ignore[attr-defined]
        dropped = {d.provider: d.reason for d in routed.explanation.dropped}  # type: ignore[attr-defined]
        if reply["provider"] == "stripe":
            found["stripe_ok"] += 1
        elif (Provider.STRIPE in dropped and "circuit" in dropped[Provider.STRIPE]) or not_called:
            found["skipped_open"] += 1
        elif [f.provider for f in failed] == [Provider.STRIPE]:  # type: ignore[attr-defined]
            found["tried_failed"] += 1
        else:
            found["other"] += 1
    return found


def _calls(stack: Stack) -> int:
    return stack.fleet.stripe.faults.api_requests


class Timeline:
    def __init__(self, board: HealthBoard) -> None:
        self.board = board
        self.clock = Clock()
        self.lines: list[str] = []
        self.totals = {"creates": 0, "fell_back": 0}

    def state(self) -> BreakerState:
        return self.board.breaker(Provider.STRIPE).state(self.board._clock())

    def note(self, line: str) -> None:
        self.lines.append(f"t={self.clock():6.2f}s  [stripe circuit {self.state().value:9}] {line}")

    def count(self, created: list[dict[str, Any]]) -> None:
        self.totals["creates"] += len(created)
        self.totals["fell_back"] += sum(c["provider"] == "polar" for c in created)


async def _trip(stack: Stack, timeline: Timeline, label: str, plan: dict[str, Any]) -> None:
    """A load of creates while Stripe fails: all fall back, the circuit opens."""
    stack.fleet.stripe.faults.set(**plan)
    before = _calls(stack)
    timeline.note(f"inject {label}")
    created = await _creates(stack, LOAD)
    calls = _calls(stack) - before
    found = await _routing(stack, created)
    timeline.count(created)
    timeline.note(
        f"{LOAD} creates: {sum(c['provider'] == 'polar' for c in created)} at polar; "
        f"stripe called {calls}x; tried+failed {found['tried_failed']}, "
        f"skipped (circuit) {found['skipped_open']}"
    )
    # every create fell back and opened at the next provider
    assert all(c["provider"] == "polar" for c in created), created
    # Stripe was called exactly once per session that tried it: skipped ones cost nothing
    assert calls == found["tried_failed"]
    # in flight when it tripped: at most one batch of concurrent commands, and the
    # creates that completed the trip; every later one skipped Stripe
    assert TRIP_AFTER <= found["tried_failed"] <= CONCURRENCY + TRIP_AFTER - 1
    assert found["skipped_open"] == LOAD - found["tried_failed"]
    assert timeline.state() is BreakerState.OPEN


async def _probe_fails(stack: Stack, timeline: Timeline) -> None:
    """Still failing after the cool-down: one probe only, however many creates race."""
    await _until_half_open(timeline)
    timeline.note("cool-down over, fault still on")
    before = _calls(stack)
    racing = await _queued_creates(stack, CONCURRENCY)
    probes = _calls(stack) - before
    found = await _routing(stack, racing)
    timeline.count(racing)
    timeline.note(
        f"{CONCURRENCY} concurrent creates while half-open: stripe called {probes}x "
        f"(the probe), {found['skipped_open']} skipped it; all at polar"
    )
    assert all(c["provider"] == "polar" for c in racing)
    assert probes == 1
    assert found["tried_failed"] == 1
    assert found["skipped_open"] == CONCURRENCY - 1
    assert timeline.state() is BreakerState.OPEN


async def _recover(stack: Stack, timeline: Timeline) -> None:
    """Fault lifted: skipped until the cool-down ends, then one probe closes it."""
    stack.fleet.stripe.faults.reset()
    timeline.note("fault lifted")
    before = _calls(stack)
    during_open = await _creates(stack, 2)
    timeline.count(during_open)
    if timeline.state() is BreakerState.OPEN:
        assert [c["provider"] for c in during_open] == ["polar", "polar"]
        assert _calls(stack) == before  # still open: not called although healthy again
        timeline.note("2 creates before the cool-down: polar, stripe not called")
    await _until_half_open(timeline)
    timeline.note("cool-down over")
    before = _calls(stack)
    probe = await _creates(stack, 1)
    assert probe[0]["provider"] == "stripe"
    assert _calls(stack) - before == 1
    assert timeline.state() is BreakerState.CLOSED
    timeline.note("probe create: stripe answered, circuit closed")
    before = _calls(stack)
    after = await _creates(stack, 10)
    assert {c["provider"] for c in after} == {"stripe"}
    assert _calls(stack) - before == 10
    timeline.note("10 creates: all at stripe again")
    timeline.count([*probe, *after])


async def test_a_failing_provider_trips_its_circuit_falls_back_and_recovers(stack, boards):
    timeline = Timeline(boards[0])
    healthy = await _creates(stack, 5)
    assert {c["provider"] for c in healthy} == {"stripe"}
    timeline.count(healthy)
    timeline.note("5 creates, healthy: all at stripe")

    for label, plan in (
        ("5xx (503 on every call)", {"error_rate": 1.0, "error_status": 503}),
        (
            f"timeouts (hang 10 s, adapter timeout {STRIPE_TIMEOUT} s)",
            {"hang_rate": 1.0, "hang_seconds": 10.0},
        ),
    ):
        await _trip(stack, timeline, label, plan)
        await _probe_fails(stack, timeline)
        await _recover(stack, timeline)

    # slow but within the adapter's timeout: not a failure, nothing falls back
    stack.fleet.stripe.faults.set(latency_seconds=STRIPE_TIMEOUT / 3)
    timeline.note(f"inject slow answers ({STRIPE_TIMEOUT / 3:.2f} s, within the timeout)")
    slow = await _creates(stack, 10)
    stack.fleet.stripe.faults.reset()
    assert {c["provider"] for c in slow} == {"stripe"}
    assert timeline.state() is BreakerState.CLOSED
    timeline.note("10 slow creates: all at stripe, circuit stayed closed")
    timeline.count(slow)

    stats = stack.fleet.stripe.all_stats()
    totals = timeline.totals
    report(
        "provider failing under a load of creates",
        [
            f"breaker: opens after {TRIP_AFTER} failures in a row, cool-down {COOL_DOWN} s",
            *timeline.lines,
            (
                f"totals: {totals['creates']} creates, all opened; {totals['fell_back']} fell "
                f"back to polar; stripe simulator: {stats['api_requests']} API calls, "
                f"{stats['injected_errors']} injected 5xx, {stats['injected_hangs']} hangs"
            ),
            f"duration {timeline.clock():.1f} s",
        ],
    )


async def _until_half_open(timeline: Timeline) -> None:
    await wait_until(
        lambda: timeline.state() is not BreakerState.OPEN,
        COOL_DOWN + 5,
        what="the cool-down to end (circuit no longer open)",
    )
