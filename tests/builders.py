"""Test data builders shared by the test levels (no servers here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

from ulid import ULID

from events import (
    CheckoutCompleted,
    CheckoutRequested,
    CheckoutRouted,
    EventMetadata,
    ProviderSessionOpened,
    RoutingExplanation,
)
from events.catalog import CheckoutEvent
from orchestrator.jetstream.streams import StreamLayout

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
_ids = count(1)


def layout_for(names: object, *, partitions: int = 16, window: float = 300.0) -> StreamLayout:
    return StreamLayout(
        events_stream=names.stream,  # type: ignore[attr-defined]
        events_prefix=names.events_prefix,  # type: ignore[attr-defined]
        commands_stream=names.commands_stream,  # type: ignore[attr-defined]
        commands_prefix=names.commands_prefix,  # type: ignore[attr-defined]
        partitions=partitions,
        duplicate_window_seconds=window,
    )


def new_session_id() -> str:
    return f"cs_{ULID()}"


def requested(session_id: str, *, amount: int = 2500, currency: str = "EUR") -> CheckoutRequested:
    return CheckoutRequested(
        session_id=session_id,
        occurred_at=T0,
        mode="payment",
        amount={"currency": currency, "amount": amount},
    )


def lifecycle(session_id: str) -> list[CheckoutEvent]:
    """requested -> routed -> opened -> completed(paid): a whole happy session."""
    return [
        requested(session_id),
        CheckoutRouted(
            session_id=session_id,
            occurred_at=T0 + timedelta(seconds=1),
            provider="stripe",
            attempt=1,
            explanation=RoutingExplanation(
                rules_version="test", matched_rule="default", candidates=("stripe",)
            ),
        ),
        ProviderSessionOpened(
            session_id=session_id,
            occurred_at=T0 + timedelta(seconds=2),
            provider="stripe",
            attempt=1,
            provider_session_id=f"cs_test_{session_id}",
            checkout_url="https://checkout.stripe.test/pay",
        ),
        CheckoutCompleted(
            session_id=session_id,
            occurred_at=T0 + timedelta(seconds=3),
            payment_status="paid",
        ),
    ]


def metadata(command_id: str | None = None, *, n: int = 1) -> list[EventMetadata]:
    command_id = command_id or f"cmd-{next(_ids)}-{ULID()}"
    return [
        EventMetadata(
            event_id=str(ULID()),
            command_id=command_id,
            correlation_id=command_id,
            causation_id=command_id,
            occurred_at=T0,
        )
        for _ in range(n)
    ]
