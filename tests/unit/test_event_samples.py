"""Stored event samples: every schema version ever published must stay readable.

``tests/event_samples/<type>.v<version>.json`` holds one event as it was written to
the stream: ``{"type", "schema_version", "payload"}``. A published shape is never
edited; a change is a new version, a pure upcaster from the old one, and a new
sample. These tests fail when a version has no sample, when an old sample no longer
upcasts to a valid event, or when a current model's shape drifts from its sample
without a version bump.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import Field

from events import EVENT_TYPES, event_adapter
from events.catalog import EventBase
from events.upcasting import UPCASTERS, UnknownEventError, Upcaster, current_version, upcast

SAMPLES = Path(__file__).resolve().parents[1] / "event_samples"
NAME = re.compile(r"^(?P<type>[a-z_]+)\.v(?P<version>[1-9][0-9]*)\.json$")


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


SAMPLE_FILES = sorted(SAMPLES.glob("*.json"))


def test_the_sample_directory_holds_only_samples() -> None:
    assert SAMPLE_FILES
    assert {path.name for path in SAMPLES.iterdir()} == {path.name for path in SAMPLE_FILES}


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.stem)
def test_sample_is_named_for_its_type_and_version(path: Path) -> None:
    match = NAME.match(path.name)
    assert match, f"{path.name} is not <type>.v<version>.json"
    doc = _load(path)
    assert set(doc) == {"type", "schema_version", "payload"}
    assert doc["type"] == match["type"]
    assert doc["schema_version"] == int(match["version"])
    assert doc["payload"]["type"] == doc["type"]
    assert doc["payload"]["schema_version"] == doc["schema_version"]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.stem)
def test_sample_upcasts_to_a_valid_current_event(path: Path) -> None:
    doc = _load(path)
    stored = copy.deepcopy(doc["payload"])
    lifted = upcast(doc["type"], doc["schema_version"], doc["payload"])
    event = event_adapter.validate_python(lifted)
    assert doc["payload"] == stored  # reading never alters what was stored
    assert type(event) is EVENT_TYPES[doc["type"]]
    assert event.schema_version == current_version(doc["type"])


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda path: path.stem)
def test_current_version_sample_is_exactly_what_the_model_writes(path: Path) -> None:
    """A field added, renamed or retyped without a new version shows up here."""
    doc = _load(path)
    if doc["schema_version"] != current_version(doc["type"]):
        pytest.skip("an old version: its model is gone, only the upcast must hold")
    event = EVENT_TYPES[doc["type"]].model_validate(doc["payload"])
    assert json.loads(event.model_dump_json(exclude_none=False)) == doc["payload"]


def test_every_version_of_every_event_type_has_a_sample() -> None:
    expected = {
        (event_type, version)
        for event_type in EVENT_TYPES
        for version in range(1, current_version(event_type) + 1)
    }
    stored = {(doc["type"], doc["schema_version"]) for doc in map(_load, SAMPLE_FILES)}
    assert expected - stored == set(), "missing samples (write one per published version)"
    assert stored - expected == set(), "samples of unknown types or future versions"


def test_the_registered_upcasters_form_complete_chains() -> None:
    for event_type, version in UPCASTERS:
        assert event_type in EVENT_TYPES
        assert 1 <= version < current_version(event_type)
    for event_type in EVENT_TYPES:
        for version in range(1, current_version(event_type)):
            assert (event_type, version) in UPCASTERS, f"no step from {event_type} v{version}"


# --- the upcaster chain mechanism, with a local registry ----------------------------------


class CanceledV3(EventBase):
    """A pretend third version of `canceled`: a reason code, and a reason renamed."""

    type: Literal["canceled"] = "canceled"
    schema_version: Literal[3] = 3
    reason_code: str
    detail: str | None = Field(default=None, max_length=1000)


def _v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    payload["reason_code"] = "customer" if payload.get("reason") else "unknown"
    return payload


def _v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in payload.items() if k != "reason"}, "detail": payload["reason"]}


CHAIN: dict[tuple[str, int], Upcaster] = {("canceled", 1): _v1_to_v2, ("canceled", 2): _v2_to_v3}


@pytest.fixture
def canceled_at_v3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EVENT_TYPES, "canceled", CanceledV3)


def canceled_v1() -> dict[str, Any]:
    payload: dict[str, Any] = _load(SAMPLES / "canceled.v1.json")["payload"]
    return payload


@pytest.mark.usefixtures("canceled_at_v3")
def test_an_old_payload_is_lifted_step_by_step_to_the_current_version() -> None:
    stored = canceled_v1()
    before = copy.deepcopy(stored)
    lifted = upcast("canceled", 1, stored, upcasters=CHAIN)
    assert stored == before
    event = CanceledV3.model_validate(lifted)
    assert event.schema_version == 3
    assert event.reason_code == "customer"
    assert event.detail == before["reason"]
    assert event.session_id == before["session_id"]


@pytest.mark.usefixtures("canceled_at_v3")
def test_a_payload_in_the_middle_of_the_chain_takes_only_the_remaining_steps() -> None:
    v2 = {**canceled_v1(), "schema_version": 2, "reason_code": "merchant"}
    event = CanceledV3.model_validate(upcast("canceled", 2, v2, upcasters=CHAIN))
    assert event.reason_code == "merchant"


@pytest.mark.usefixtures("canceled_at_v3")
def test_a_missing_step_in_the_chain_is_an_unknown_event() -> None:
    with pytest.raises(UnknownEventError, match="no upcaster for canceled v2"):
        upcast("canceled", 1, canceled_v1(), upcasters={("canceled", 1): _v1_to_v2})
    with pytest.raises(UnknownEventError, match="no upcaster for canceled v1"):
        upcast("canceled", 1, canceled_v1())  # the real registry has no such steps


def test_a_version_newer_than_the_code_is_an_unknown_event() -> None:
    with pytest.raises(UnknownEventError, match="newer than this code"):
        upcast("canceled", 2, canceled_v1())


def test_an_unknown_type_is_an_unknown_event() -> None:
    with pytest.raises(UnknownEventError, match="unknown event type 'refunded'"):
        upcast("refunded", 1, {})
    with pytest.raises(UnknownEventError):
        current_version("refunded")


def test_a_current_payload_passes_through_unchanged() -> None:
    stored = canceled_v1()
    assert upcast("canceled", 1, stored) == stored
    assert upcast("canceled", 1, stored) is not stored
