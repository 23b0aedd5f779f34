"""The projector's decoding (`projections.decoding`) held to the catalog, the one schema.

The structs must declare exactly the catalog's fields (a field added to an event and not
to its struct would be lost on the read side), decode every stored sample and generated
events to the catalog's values, and refuse what the catalog refuses structurally, with a
`DecodeError` the projector parks.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events import EVENT_TYPES
from events.codec import Headers, decode
from events.errors import DecodeError
from events.values import Address, Customer, LineItem, SessionUrls
from events.values import Amounts as CatalogAmounts
from projections import decoding
from projections.decoding import StoredPayload, decode_stored
from tests.support.builders import encode_headers, lifecycle, new_session_id, requested

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "event_samples").glob("*.json"))


def _structs() -> dict[str, type[msgspec.Struct]]:
    return {cls.__struct_config__.tag: cls for cls in typing.get_args(StoredPayload)}


def _fields(struct: type[msgspec.Struct]) -> set[str]:
    return set(struct.__struct_fields__)


def test_every_event_type_has_a_struct_with_exactly_its_fields() -> None:
    structs = _structs()
    assert set(structs) == set(EVENT_TYPES)
    for event_type, model in EVENT_TYPES.items():
        assert _fields(structs[event_type]) == set(model.model_fields) - {"type"}, event_type


@pytest.mark.parametrize(
    ("struct", "model"),
    [
        (decoding.LineItem, LineItem),
        (decoding.Amounts, CatalogAmounts),
        (decoding.RequestedAmount, EVENT_TYPES["requested"].model_fields["amount"].annotation),
        (decoding.RoutingExplanation, EVENT_TYPES["routed"].model_fields["explanation"].annotation),
    ],
)
def test_nested_values_have_exactly_the_catalogs_fields(struct: Any, model: Any) -> None:
    assert _fields(struct) == set(model.model_fields)


def _normal(value: Any) -> Any:
    """JSON without empty members (unset optional values: None, or an empty default)."""
    if isinstance(value, dict):
        kept = {k: _normal(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _catalog_json(payload: bytes, headers: dict[str, str]) -> Any:
    recorded = decode("s", payload, headers, 1)
    return _normal(json.loads(recorded.event.model_dump_json()))


def _ours_json(payload: bytes, headers: dict[str, str]) -> Any:
    stored = decode_stored("s", payload, headers, 1)
    as_json = json.loads(msgspec.json.encode(stored.event))
    assert as_json["type"] == stored.event.type
    return _normal(as_json)


def _headers(event_type: str, version: int) -> dict[str, str]:
    headers = encode_headers(requested(new_session_id()))
    return {**headers, Headers.EVENT_TYPE: event_type, Headers.SCHEMA_VERSION: str(version)}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_every_sample_decodes_to_the_catalogs_values(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    payload = json.dumps(doc["payload"]).encode()
    headers = _headers(doc["type"], doc["schema_version"])
    assert _ours_json(payload, headers) == _catalog_json(payload, headers)
    # the timeline keeps the payload in the current version, as the catalog dumps it
    stored = decode_stored("s", payload, headers, 1)
    catalog = decode("s", payload, headers, 1).event
    assert json.loads(stored.payload) == json.loads(catalog.model_dump_json())


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=30)


@given(
    name=_text,
    email=st.emails(),
    metadata=st.dictionaries(st.from_regex(r"[a-z]{1,10}", fullmatch=True), _text, max_size=4),
    amount=st.integers(1, 10**12),
    country=st.sampled_from(["SN", "FR", "US", None]),
    city=st.none() | _text,
)
def test_generated_events_decode_to_the_catalogs_values(
    name: str,
    email: str,
    metadata: dict[str, str],
    amount: int,
    country: str | None,
    city: str | None,
) -> None:
    sid = new_session_id()
    customer = Customer(
        name=name or None, email=email, country=country, address=Address(city=city or None)
    )
    first = requested(
        sid,
        amount=amount,
        customer=customer,
        metadata=metadata,
        urls=SessionUrls(success_url="https://shop.test/ok"),
    )
    for event in [first, *lifecycle(sid)[1:]]:
        payload = event.model_dump_json().encode()
        headers = _headers(event.type, event.schema_version)
        assert _ours_json(payload, headers) == _catalog_json(payload, headers)


def _bad(payload: bytes, **headers: str) -> str:
    event = requested(new_session_id())
    with pytest.raises(DecodeError) as caught:
        decode_stored("x.1.s.requested", payload, {**encode_headers(event), **headers}, 9)
    return str(caught.value)


def test_what_the_catalog_refuses_structurally_is_a_decode_error() -> None:
    good = json.loads(requested(new_session_id()).model_dump_json())
    assert "Invalid JSON" in _bad(b"{not json")
    assert "message 9 on x.1.s.requested" in _bad(b"{not json")
    assert "not a catalog event" in _bad(json.dumps({**good, "amount": "lots"}).encode())
    missing = {k: v for k, v in good.items() if k != "mode"}
    assert "mode" in _bad(json.dumps(missing).encode())
    teleported = {Headers.EVENT_TYPE: "teleported"}
    assert "unknown event type" in _bad(json.dumps(good).encode(), **teleported)
    canceled = {"session_id": good["session_id"], "occurred_at": good["occurred_at"]}
    canceled |= {"type": "canceled", "schema_version": 1}
    assert "headers say requested v2" in _bad(json.dumps(canceled).encode())
    naive = {Headers.OCCURRED_AT: "2026-01-01T00:00:00"}
    assert "time zone" in _bad(json.dumps(good).encode(), **naive)
    assert "not a catalog event" in _bad(b"[]")
    assert "not a catalog event" in _bad(json.dumps({**good, "extra": 1}).encode())
    nested = {**good, "amount": {**good["amount"], "extra": 1}}
    assert "not a catalog event" in _bad(json.dumps(nested).encode())
