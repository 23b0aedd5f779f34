"""Test data: unique names, stream layouts, events, their metadata, command bodies.

Pure: nothing here talks to a server. ``T0`` is the instant the hand-made events carry.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

from ulid import ULID

from events import (
    CheckoutCompleted,
    CheckoutRequested,
    CheckoutRouted,
    EventMetadata,
    ProviderSessionOpened,
    RoutingExplanation,
    encode,
)
from events.catalog import CheckoutEvent
from events.values import Mode, Provider, RequestedAmount
from orchestrator.jetstream.streams import StreamLayout

__all__ = [
    "T0",
    "StreamNames",
    "create_body",
    "create_payload",
    "encode_headers",
    "layout_for",
    "lifecycle",
    "metadata",
    "new_metadata",
    "new_session_id",
    "requested",
    "routed",
]

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
_ids = count(1)


@dataclass(frozen=True, slots=True)
class StreamNames:
    """Stream names and subject prefixes no other test uses (the ``stream_names`` fixture)."""

    stream: str  # events stream, subjects f"{events_prefix}.>"
    commands_stream: str  # commands stream, subjects f"{commands_prefix}.>"
    events_prefix: str
    commands_prefix: str

    @classmethod
    def unique(cls) -> StreamNames:
        tag = uuid.uuid4().hex[:12]
        return cls(
            stream=f"T_{tag}",
            commands_stream=f"C_{tag}",
            events_prefix=f"t{tag}.events",
            commands_prefix=f"t{tag}.commands",
        )


def layout_for(names: StreamNames, *, partitions: int = 16, window: float = 300.0) -> StreamLayout:
    return StreamLayout(
        events_stream=names.stream,
        events_prefix=names.events_prefix,
        commands_stream=names.commands_stream,
        commands_prefix=names.commands_prefix,
        partitions=partitions,
        duplicate_window_seconds=window,
    )


def new_session_id() -> str:
    return f"cs_{ULID()}"


# --- events and metadata ---------------------------------------------------------------------


def requested(
    session_id: str, *, amount: int = 2500, currency: str = "EUR", **changes: Any
) -> CheckoutRequested:
    fields: dict[str, Any] = {
        "session_id": session_id,
        "occurred_at": T0,
        "mode": Mode.PAYMENT,
        "amount": RequestedAmount(currency=currency, amount=amount),
        **changes,
    }
    return CheckoutRequested(**fields)


def routed(session_id: str, *, occurred_at: datetime = T0) -> CheckoutRouted:
    return CheckoutRouted(
        session_id=session_id,
        occurred_at=occurred_at,
        provider=Provider.STRIPE,
        attempt=1,
        explanation=RoutingExplanation(
            rules_version="test", matched_rule="default", candidates=(Provider.STRIPE,)
        ),
    )


def lifecycle(session_id: str) -> list[CheckoutEvent]:
    """requested -> routed -> opened -> completed(paid): a whole happy session."""
    return [
        requested(session_id),
        routed(session_id, occurred_at=T0 + timedelta(seconds=1)),
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
    """Metadata of ``n`` events of one command, at ``T0``, without a trace."""
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


def new_metadata(command_id: str) -> EventMetadata:
    """Metadata of one event of ``command_id``, now, with a random ``traceparent``."""
    trace = f"{random.getrandbits(128):032x}"
    return EventMetadata(
        event_id=str(ULID()),
        command_id=command_id,
        correlation_id=command_id,
        causation_id=command_id,
        occurred_at=datetime.now(UTC),
        traceparent=f"00-{trace}-{random.getrandbits(64):016x}-01",
    )


def encode_headers(event: CheckoutEvent) -> dict[str, str]:
    """The headers the event store would put on ``event`` (for hand-made messages)."""
    encoded = encode(event, new_metadata(f"cmd-{ULID()}"), prefix="x", partitions=1, index=0)
    return encoded.headers


# --- command bodies --------------------------------------------------------------------------


def create_body(**overrides: Any) -> dict[str, Any]:
    """A create (HTTP or NATS) for a GBP card payment in Great Britain (Stripe's route)."""
    body = {
        "session_id": new_session_id(),
        "currency": "GBP",
        "amount": 4997,
        "customer": {"email": "mo@example.test", "country": "GB"},
        "urls": {"success_url": "https://shop.test/ok", "cancel_url": "https://shop.test/no"},
    }
    return body | overrides


def create_payload(index: int) -> dict[str, Any]:
    """The ``index``-th create of a load: every third one in XOF for Senegal (lomi), else GBP
    (Stripe); amounts and emails differ by index."""
    if index % 3 == 2:
        body = create_body(
            currency="XOF",
            amount=5000 + index,
            customer={"email": f"c{index}@example.sn", "country": "SN"},
        )
        del body["urls"]
        return body
    return create_body(
        amount=4997 + index, customer={"email": f"c{index}@example.test", "country": "GB"}
    )
