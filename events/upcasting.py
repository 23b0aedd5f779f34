"""Upcasters: pure steps that lift a stored event payload to the next schema version.

Old events stay in the stream as they were written; they are upgraded on read,
step by step (v1 -> v2 -> v3), before validation against the current model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from events.catalog import EVENT_TYPES
from events.errors import UnknownEventError

__all__ = ["UPCASTERS", "UnknownEventError", "Upcaster", "current_version", "upcast"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _customer_stays_clear(payload: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 of ``requested`` and ``completed``: v2 seals the customer under a data
    subject; a v1 event was written in clear and stays so (no subject), read as it is.
    docs/privacy.md says how to move such a stream to sealed events."""
    return payload


UPCASTERS: Mapping[tuple[str, int], Upcaster] = {
    ("requested", 1): _customer_stays_clear,
    ("completed", 1): _customer_stays_clear,
}
"""(event type, from version) -> step to version + 1."""


_VERSIONS: dict[type, int] = {}  # model -> its schema_version (model_fields is slow to read)


def current_version(event_type: str) -> int:
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise UnknownEventError(f"unknown event type {event_type!r}")
    version = _VERSIONS.get(model)
    if version is None:
        version = _VERSIONS[model] = int(model.model_fields["schema_version"].default)
    return version


def upcast(
    event_type: str,
    version: int,
    payload: dict[str, Any],
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> dict[str, Any]:
    """Lift ``payload`` from ``version`` to the current version of ``event_type``."""
    target = current_version(event_type)
    if version > target:
        raise UnknownEventError(f"{event_type} v{version} is newer than this code (v{target})")
    payload = dict(payload)  # never touch the caller's dict, even when no step runs
    while version < target:
        step = upcasters.get((event_type, version))
        if step is None:
            raise UnknownEventError(f"no upcaster for {event_type} v{version}")
        payload = step(payload)
        version += 1
    payload["schema_version"] = target
    return payload
