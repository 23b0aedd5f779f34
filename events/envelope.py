"""What travels with an event besides its payload, and an event as read back."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from events.catalog import CheckoutEvent
from events.values import UtcDatetime, Value

__all__ = ["EventMetadata", "RecordedEvent"]


class EventMetadata(Value):
    """Message headers of one event (see `events.codec.Headers` for the names)."""

    event_id: str = Field(min_length=1, max_length=64)
    command_id: str = Field(min_length=1, max_length=128)
    correlation_id: str = Field(min_length=1, max_length=128)
    causation_id: str = Field(min_length=1, max_length=128)
    occurred_at: UtcDatetime
    traceparent: str | None = Field(default=None, max_length=128)
    command_fingerprint: str | None = Field(default=None, max_length=128)
    """What the command id is bound to (canonical JSON hash of the command); absent on
    events stored before fingerprints, and on events of internal commands."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored: payload, headers and its place in the stream."""

    event: CheckoutEvent
    metadata: EventMetadata
    sequence: int
    subject: str

    @property
    def session_id(self) -> str:
        return self.event.session_id
