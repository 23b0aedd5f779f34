"""The wire codec (event <-> JetStream message) and the subject layout.

Every event type goes through ``encode`` and back through ``decode``; the stored
samples under ``tests/event_samples`` provide one realistic event of each type.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from events import EVENT_TYPES, DecodeError, EventMetadata, Headers, decode, encode, event_adapter
from events.catalog import CheckoutCanceled, CheckoutEvent
from events.codec import message_id
from events.subjects import (
    DEFAULT_PARTITIONS,
    event_subject,
    fnv1a32,
    parse_event_subject,
    partition_filter,
    partition_of,
    session_filter,
)
from events.upcasting import upcast

SAMPLES = Path(__file__).resolve().parents[1] / "event_samples"
PREFIX = "checkout.events"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SENT_AT = datetime(2026, 11, 21, 15, 30, 0, 250000, tzinfo=UTC)


def _current_samples() -> dict[str, CheckoutEvent]:
    """One event per type, read from the newest stored sample of that type."""
    events: dict[str, CheckoutEvent] = {}
    for path in sorted(SAMPLES.glob("*.json")):
        doc = json.loads(path.read_text())
        event = event_adapter.validate_python(
            upcast(doc["type"], doc["schema_version"], doc["payload"])
        )
        events[event.type] = event
    return events


EVENTS = _current_samples()


def metadata(*, traceparent: str | None = TRACEPARENT) -> EventMetadata:
    return EventMetadata(
        event_id="01JDQ9A0000000000000000001",
        command_id="cmd_01JDQ9A0000000000000000042",
        correlation_id="corr-7",
        causation_id="msg-6",
        occurred_at=SENT_AT,
        traceparent=traceparent,
    )


def canceled() -> CheckoutCanceled:
    return CheckoutCanceled(session_id="cs_1", occurred_at=SENT_AT, reason="customer left")


def encoded_canceled() -> tuple[str, bytes, dict[str, str]]:
    message = encode(canceled(), metadata(), prefix=PREFIX, partitions=16, index=0)
    return message.subject, message.payload, message.headers


# --- round trip --------------------------------------------------------------------------


def test_there_is_an_event_of_every_type_to_round_trip() -> None:
    assert set(EVENTS) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
@pytest.mark.parametrize("index", [0, 3])
def test_encode_then_decode_gives_the_same_event(event_type: str, index: int) -> None:
    event = EVENTS[event_type]
    message = encode(event, metadata(), prefix=PREFIX, partitions=16, index=index)

    partition = partition_of(event.session_id, 16)
    assert message.subject == f"{PREFIX}.{partition}.{event.session_id}.{event_type}"
    assert message.headers == {
        Headers.EVENT_ID: "01JDQ9A0000000000000000001",
        Headers.EVENT_TYPE: event_type,
        Headers.SCHEMA_VERSION: str(EVENT_TYPES[event_type].model_fields["schema_version"].default),
        Headers.COMMAND_ID: "cmd_01JDQ9A0000000000000000042",
        Headers.CORRELATION_ID: "corr-7",
        Headers.CAUSATION_ID: "msg-6",
        Headers.OCCURRED_AT: "2026-11-21T15:30:00.250000+00:00",
        Headers.TRACEPARENT: TRACEPARENT,
        Headers.MSG_ID: f"cmd_01JDQ9A0000000000000000042:{index}",
    }
    assert json.loads(message.payload)["type"] == event_type

    recorded = decode(message.subject, message.payload, message.headers, sequence=41)
    assert recorded.event == event
    assert type(recorded.event) is type(event)
    assert recorded.metadata == metadata()
    assert recorded.sequence == 41
    assert recorded.subject == message.subject
    assert recorded.session_id == event.session_id


def test_without_traceparent_there_is_no_traceparent_header() -> None:
    message = encode(canceled(), metadata(traceparent=None), prefix=PREFIX, partitions=16, index=0)
    assert Headers.TRACEPARENT not in message.headers
    recorded = decode(message.subject, message.payload, message.headers, sequence=1)
    assert recorded.metadata.traceparent is None


def test_payload_keeps_null_fields_so_the_stored_shape_is_explicit() -> None:
    message = encode(canceled(), metadata(), prefix=PREFIX, partitions=16, index=0)
    assert json.loads(message.payload) == {
        "session_id": "cs_1",
        "occurred_at": "2026-11-21T15:30:00.250000Z",
        "type": "canceled",
        "schema_version": 1,
        "reason": "customer left",
    }


def test_message_ids_of_one_command_differ_by_index_and_repeat_on_retry() -> None:
    ids = [message_id("cmd_1", index) for index in range(3)]
    assert ids == ["cmd_1:0", "cmd_1:1", "cmd_1:2"]
    assert message_id("cmd_1", 1) == ids[1]


def test_occurred_at_header_in_another_zone_is_read_as_utc() -> None:
    subject, payload, headers = encoded_canceled()
    headers[Headers.OCCURRED_AT] = "2026-11-21T16:30:00.25+01:00"
    assert decode(subject, payload, headers, 1).metadata.occurred_at == SENT_AT


# --- malformed messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"\xff\xfe\x00", id="not-utf8"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b'"canceled"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"type": "canceled", "schema_version": 1}', id="missing-fields"),
        pytest.param(
            b'{"type": "canceled", "schema_version": 1, "session_id": "cs_1",'
            b' "occurred_at": "2026-11-21T15:30:00Z", "reason": null, "refund": true}',
            id="unknown-field",
        ),
        pytest.param(
            b'{"type": "canceled", "schema_version": 1, "session_id": "cs_1",'
            b' "occurred_at": "2026-11-21T15:30:00", "reason": null}',
            id="naive-occurred-at",
        ),
        pytest.param(
            b'{"type": "expired", "schema_version": 1, "session_id": "cs_1",'
            b' "occurred_at": "2026-11-21T15:30:00Z", "reason": "provider"}',
            id="payload-of-another-type",
        ),
    ],
)
def test_malformed_payload_is_a_decode_error(payload: bytes) -> None:
    subject, _, headers = encoded_canceled()
    with pytest.raises(DecodeError, match=f"message 7 on {subject}"):
        decode(subject, payload, headers, 7)


@pytest.mark.parametrize(
    "name",
    [
        Headers.EVENT_ID,
        Headers.EVENT_TYPE,
        Headers.SCHEMA_VERSION,
        Headers.COMMAND_ID,
        Headers.CORRELATION_ID,
        Headers.CAUSATION_ID,
        Headers.OCCURRED_AT,
    ],
)
def test_missing_header_is_a_decode_error(name: str) -> None:
    subject, payload, headers = encoded_canceled()
    del headers[name]
    with pytest.raises(DecodeError):
        decode(subject, payload, headers, 7)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(Headers.SCHEMA_VERSION, "one", id="version-not-a-number"),
        pytest.param(Headers.SCHEMA_VERSION, "1.0", id="version-not-an-int"),
        pytest.param(Headers.SCHEMA_VERSION, "2", id="version-newer-than-code"),
        pytest.param(Headers.SCHEMA_VERSION, "0", id="version-without-upcaster"),
        pytest.param(Headers.EVENT_TYPE, "refunded", id="unknown-type"),
        pytest.param(Headers.EVENT_TYPE, "expired", id="type-differs-from-payload"),
        pytest.param(Headers.OCCURRED_AT, "yesterday", id="occurred-at-garbage"),
        pytest.param(Headers.OCCURRED_AT, "2026-11-21T15:30:00", id="occurred-at-naive"),
        pytest.param(Headers.EVENT_ID, "", id="empty-event-id"),
        pytest.param(Headers.COMMAND_ID, "c" * 129, id="overlong-command-id"),
        pytest.param(Headers.TRACEPARENT, "t" * 129, id="overlong-traceparent"),
    ],
)
def test_bad_header_is_a_decode_error(name: str, value: str) -> None:
    subject, payload, headers = encoded_canceled()
    headers[name] = value
    with pytest.raises(DecodeError):
        decode(subject, payload, headers, 7)


def test_decode_error_keeps_its_cause() -> None:
    subject, _, headers = encoded_canceled()
    with pytest.raises(DecodeError) as caught:
        decode(subject, b"{", headers, 7)
    assert isinstance(caught.value.__cause__, json.JSONDecodeError | ValidationError)


# --- subjects -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0x811C9DC5),
        ("a", 0xE40C292C),
        ("foobar", 0xBF9CF968),
    ],
)
def test_fnv1a32_known_vectors(text: str, expected: int) -> None:
    assert fnv1a32(text) == expected


def test_fnv1a32_hashes_utf8_bytes() -> None:
    assert fnv1a32("é") == fnv1a32("\u00e9")
    assert 0 <= fnv1a32("é" * 1000) <= 0xFFFFFFFF


@pytest.mark.parametrize("partitions", [1, 2, 7, DEFAULT_PARTITIONS, 64])
def test_partition_is_in_range_and_stable(partitions: int) -> None:
    ids = [f"cs_{n}" for n in range(500)]
    seen = {partition_of(sid, partitions) for sid in ids}
    assert seen <= set(range(partitions))
    assert [partition_of(sid, partitions) for sid in ids] == [
        fnv1a32(sid) % partitions for sid in ids
    ]
    if partitions <= 16:
        assert seen == set(range(partitions))  # 500 ids spread over every partition


@pytest.mark.parametrize(
    "session_id",
    ["a.b", "a b", ">", "*", "cs_1.>", "", "a" * 65, "abc\n", "a\tb", "é", "cs/1"],
)
def test_invalid_session_ids_are_rejected_in_subjects(session_id: str) -> None:
    with pytest.raises(ValueError, match="session id must match"):
        event_subject(PREFIX, session_id, "requested", 16)
    with pytest.raises(ValueError, match="session id must match"):
        session_filter(PREFIX, session_id, 16)


@pytest.mark.parametrize("session_id", ["a", "cs_test_a1B2", "A-b_9", "x" * 64])
def test_valid_session_ids_make_subjects_that_parse_back(session_id: str) -> None:
    subject = event_subject(PREFIX, session_id, "routed", 16)
    partition = partition_of(session_id, 16)
    assert subject == f"{PREFIX}.{partition}.{session_id}.routed"
    assert parse_event_subject(PREFIX, subject) == (partition, session_id, "routed")
    assert session_filter(PREFIX, session_id, 16) == f"{PREFIX}.{partition}.{session_id}.>"
    assert subject.startswith(partition_filter(PREFIX, partition).removesuffix(">"))


def test_event_types_are_single_subject_tokens() -> None:
    for event_type in EVENT_TYPES:
        assert event_type.isidentifier()
        assert "." not in event_type
