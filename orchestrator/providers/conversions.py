"""Small pure conversions of provider wire values that several transformers share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = ["aware_datetime", "string_metadata", "upper_currency"]


def upper_currency(value: object) -> str | None:
    return value.upper() if isinstance(value, str) and value else None


def aware_datetime(value: object) -> datetime | None:
    """An ISO 8601 value; one without an offset is read as UTC rather than refused."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def string_metadata(value: object) -> dict[str, str]:
    """Provider metadata as our ``dict[str, str]`` (booleans as true/false, others as JSON)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key): _text(item) for key, item in value.items() if item is not None}


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)
