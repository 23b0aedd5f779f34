"""Subject layout of the event stream, partitioned on the client.

``<prefix>.<p>.<session_id>.<event_type>`` with ``p = fnv1a32(session_id) % N``. The
partition is computed here, never by a server-side subject transform: a transform
would break the per-session expected-last-subject-sequence check.
"""

from __future__ import annotations

import functools
import re

__all__ = [
    "DEFAULT_PARTITIONS",
    "SESSION_ID_PATTERN",
    "event_subject",
    "fnv1a32",
    "parse_event_subject",
    "partition_filter",
    "partition_of",
    "session_filter",
]

DEFAULT_PARTITIONS = 16
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193


@functools.lru_cache(maxsize=65_536)  # a command hashes its session id three times or more
def fnv1a32(text: str) -> int:
    """32-bit FNV-1a of the UTF-8 bytes: stable across processes and languages."""
    value = _FNV_OFFSET
    for byte in text.encode():
        value = ((value ^ byte) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def partition_of(session_id: str, partitions: int) -> int:
    return fnv1a32(session_id) % partitions


def _checked(session_id: str) -> str:
    if not SESSION_ID_PATTERN.fullmatch(session_id):  # `$` alone lets a trailing \n through
        raise ValueError(f"session id must match {SESSION_ID_PATTERN.pattern}: {session_id!r}")
    return session_id


def session_filter(prefix: str, session_id: str, partitions: int) -> str:
    """The wildcard subject holding every event of one session."""
    sid = _checked(session_id)
    return f"{prefix}.{partition_of(sid, partitions)}.{sid}.>"


def partition_filter(prefix: str, partition: int) -> str:
    return f"{prefix}.{partition}.>"


def event_subject(prefix: str, session_id: str, event_type: str, partitions: int) -> str:
    sid = _checked(session_id)
    return f"{prefix}.{partition_of(sid, partitions)}.{sid}.{event_type}"


def parse_event_subject(prefix: str, subject: str) -> tuple[int, str, str]:
    """Split an event subject into (partition, session id, event type)."""
    rest = subject.removeprefix(prefix + ".")
    partition, session_id, event_type = rest.split(".")
    return int(partition), session_id, event_type
