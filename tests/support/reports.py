"""What a fault case prints: what it injected and what it found (`pytest -m fault -s`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["Clock", "percentile", "report"]


def report(case: str, lines: Iterable[str] = (), **figures: Any) -> None:
    """Print the case's report: free ``lines`` (a timeline), then named ``figures``."""
    shown = [f"\n[fault] {case}"]
    shown += [f"    {line}" for line in lines]
    shown += [f"    {name.replace('_', ' ')}: {_shown(value)}" for name, value in figures.items()]
    print("\n".join(shown))  # noqa: T201 - the figures the fault suite exists to observe


def _shown(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class Clock:
    """Seconds since the case started, for timelines."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self._t0


def percentile(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(fraction * len(values)))]
