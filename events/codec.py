"""Event <-> JetStream message: JSON payload plus headers.

Headers carry the envelope so a consumer can route, dedupe and trace without
parsing the payload. ``Nats-Msg-Id`` is derived from the command id and the event's
index in the command's batch, so a retried command is a duplicate for the server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from events.catalog import CheckoutEvent, event_adapter
from events.envelope import EventMetadata, RecordedEvent
from events.errors import DecodeError
from events.subjects import event_subject
from events.upcasting import UnknownEventError, current_version, upcast

__all__ = ["DecodeError", "EncodedEvent", "Headers", "decode", "encode", "message_id"]


class Headers:
    EVENT_ID = "Checkout-Event-Id"
    EVENT_TYPE = "Checkout-Event-Type"
    SCHEMA_VERSION = "Checkout-Schema-Version"
    COMMAND_ID = "Checkout-Command-Id"
    CORRELATION_ID = "Checkout-Correlation-Id"
    CAUSATION_ID = "Checkout-Causation-Id"
    OCCURRED_AT = "Checkout-Occurred-At"
    TRACEPARENT = "traceparent"
    COMMAND_FINGERPRINT = "Checkout-Command-Fingerprint"
    MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    subject: str
    payload: bytes
    headers: dict[str, str]


def message_id(command_id: str, index: int) -> str:
    return f"{command_id}:{index}"


def encode(
    event: CheckoutEvent,
    metadata: EventMetadata,
    *,
    prefix: str,
    partitions: int,
    index: int,
) -> EncodedEvent:
    headers = {
        Headers.EVENT_ID: metadata.event_id,
        Headers.EVENT_TYPE: event.type,
        Headers.SCHEMA_VERSION: str(event.schema_version),
        Headers.COMMAND_ID: metadata.command_id,
        Headers.CORRELATION_ID: metadata.correlation_id,
        Headers.CAUSATION_ID: metadata.causation_id,
        Headers.OCCURRED_AT: metadata.occurred_at.isoformat(),
        Headers.MSG_ID: message_id(metadata.command_id, index),
    }
    if metadata.traceparent:
        headers[Headers.TRACEPARENT] = metadata.traceparent
    if metadata.command_fingerprint:
        headers[Headers.COMMAND_FINGERPRINT] = metadata.command_fingerprint
    return EncodedEvent(
        subject=event_subject(prefix, event.session_id, event.type, partitions),
        payload=event.model_dump_json(exclude_none=False).encode(),
        headers=headers,
    )


def _upcast(event_type: str, version: int, payload: bytes) -> CheckoutEvent:
    raw = json.loads(payload)
    if not isinstance(raw, dict):
        raise DecodeError("event payload is not a JSON object")
    if raw.get("type") != event_type:  # the header chose the upcasters; they must agree
        raise DecodeError(f"payload type {raw.get('type')!r} is not {event_type!r}")
    return event_adapter.validate_python(upcast(event_type, version, raw))


def decode(
    subject: str, payload: bytes, headers: Mapping[str, str], sequence: int
) -> RecordedEvent:
    """Read a stored message back, upcasting old schema versions first."""
    try:
        event_type = headers[Headers.EVENT_TYPE]
        version = int(headers[Headers.SCHEMA_VERSION])
        if version == current_version(event_type):  # the common case: parse and validate in one
            event = event_adapter.validate_json(payload)
            if event.type != event_type or event.schema_version != version:
                raise DecodeError(
                    f"payload is {event.type} v{event.schema_version}, "
                    f"headers say {event_type} v{version}"
                )
        else:
            event = _upcast(event_type, version, payload)
        metadata = EventMetadata(
            event_id=headers[Headers.EVENT_ID],
            command_id=headers[Headers.COMMAND_ID],
            correlation_id=headers[Headers.CORRELATION_ID],
            causation_id=headers[Headers.CAUSATION_ID],
            occurred_at=headers[Headers.OCCURRED_AT],
            traceparent=headers.get(Headers.TRACEPARENT),
            command_fingerprint=headers.get(Headers.COMMAND_FINGERPRINT),
        )
    except (KeyError, ValueError, ValidationError, UnknownEventError) as exc:
        raise DecodeError(f"message {sequence} on {subject}: {exc}") from exc
    return RecordedEvent(event=event, metadata=metadata, sequence=sequence, subject=subject)
