"""Postgres advisory-lock keys of the projections, in the two-``int4`` form ``(class, object)``.

The class is a 32-bit FNV-1a hash of a name, so keys are stable across processes and
releases, and distinct from anything using the single-``bigint`` form.

    MIGRATIONS_LOCK                       ("projections:migrations", 0)  session lock
    owner_key(projector, partition)       ("owner:<projector>", p)       session lock
    presence_key(projector)               ("presence:<projector>", 0)    shared session lock
    switch_key(projection)                ("switch:<projection>", 0)     xact lock: batches take
                                          it shared, a rebuild's switch takes it exclusive
"""

from __future__ import annotations

from events.subjects import fnv1a32

__all__ = ["MIGRATIONS_LOCK", "class_id", "owner_key", "presence_key", "switch_key"]


def class_id(name: str) -> int:
    """The signed ``int4`` Postgres wants, from the unsigned 32-bit hash of ``name``."""
    value = fnv1a32(name)
    return value - (1 << 32) if value >= 1 << 31 else value


MIGRATIONS_LOCK = (class_id("projections:migrations"), 0)


def owner_key(projector: str, partition: int) -> tuple[int, int]:
    return class_id(f"owner:{projector}"), partition


def presence_key(projector: str) -> tuple[int, int]:
    return class_id(f"presence:{projector}"), 0


def switch_key(projection: str) -> tuple[int, int]:
    return class_id(f"switch:{projection}"), 0
