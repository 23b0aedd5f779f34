"""The circuit breaker's thresholds come from settings (CHECKOUT_BREAKER_*)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from events.values import Provider
from orchestrator.bootstrap import create_flow
from orchestrator.jetstream.event_store import EventStore
from orchestrator.settings import Settings
from orchestrator.telemetry import Telemetry


def _board(settings: Settings):
    flow = create_flow(
        settings,
        cast("EventStore", None),  # never used: no command is handled here
        {},
        clock=lambda: datetime.now(UTC),
        new_id=lambda: "id",
        telemetry=Telemetry.disabled(),
    )
    return flow._health


def test_the_circuit_opens_after_the_configured_failures_in_a_row():
    board = _board(Settings(breaker_consecutive_failures=2, breaker_cool_down_seconds=60))
    board.record_failure(Provider.STRIPE)
    assert board.allow(Provider.STRIPE)
    board.record_failure(Provider.STRIPE)
    assert not board.allow(Provider.STRIPE)


def test_the_default_needs_five():
    board = _board(Settings())
    for _ in range(4):
        board.record_failure(Provider.STRIPE)
    assert board.allow(Provider.STRIPE)
    board.record_failure(Provider.STRIPE)
    assert not board.allow(Provider.STRIPE)
