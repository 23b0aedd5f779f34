"""Benchmark figures side by side: ours, the raw baseline doing the same I/O, the peer.

A `Row` is one scenario's figure; the ratio columns and the verdict against the issue's
target are computed here, so the printed table and the JSON never disagree.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.table import Table

__all__ = ["Report", "Row", "Target"]

Better = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class Target:
    """What the figure must reach: an absolute bound, or a share of the raw / peer figure."""

    absolute: float | None = None
    of_raw: float | None = None  # ours >= of_raw * raw (lower is better: ours <= of_raw * raw)
    of_peer: float | None = None  # ours >= of_peer * peer

    def describe(self, unit: str, better: Better) -> str:
        parts = []
        if self.absolute is not None:
            parts.append(f"{'≥' if better == 'higher' else '<'} {self.absolute:,.0f} {unit}")
        if self.of_raw is not None:
            parts.append(
                f"≥ {self.of_raw:.0%} of raw" if better == "higher" else f"≤ {self.of_raw:g}x raw"
            )
        if self.of_peer is not None:
            parts.append(f"≥ {self.of_peer:g}x peer")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    unit: str
    ours: float
    raw: float | None = None
    peer: float | None = None
    better: Better = "higher"
    target: Target | None = None
    note: str = ""

    @property
    def vs_raw(self) -> float | None:
        return self.ours / self.raw if self.raw else None

    @property
    def vs_peer(self) -> float | None:
        return self.ours / self.peer if self.peer else None

    @property
    def met(self) -> bool | None:
        target = self.target
        if target is None:
            return None
        checks: list[bool] = []
        if target.absolute is not None:
            checks.append(
                self.ours >= target.absolute
                if self.better == "higher"
                else self.ours < target.absolute
            )
        if target.of_raw is not None and self.vs_raw is not None:
            checks.append(
                self.vs_raw >= target.of_raw
                if self.better == "higher"
                else self.vs_raw <= target.of_raw
            )
        if target.of_peer is not None and self.vs_peer is not None:
            checks.append(self.vs_peer >= target.of_peer)
        return all(checks) if checks else None


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


@dataclass
class Report:
    title: str
    conditions: dict[str, str | int | float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def table(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        for name in ("scenario", "unit", "ours", "raw", "ours/raw", "peer", "ours/peer"):
            table.add_column(name, justify="left" if name == "scenario" else "right")
        table.add_column("target")
        table.add_column("met", justify="center")
        for row in self.rows:
            met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: ""}[row.met]
            table.add_row(
                row.scenario + (f"\n[dim]{row.note}[/dim]" if row.note else ""),
                row.unit,
                _number(row.ours),
                _number(row.raw),
                _ratio(row.vs_raw),
                _number(row.peer),
                _ratio(row.vs_peer),
                row.target.describe(row.unit, row.better) if row.target else "",
                met,
            )
        return table

    def print(self, console: Console) -> None:
        console.print(self.table())
        console.print(
            "conditions: " + ", ".join(f"{k}={v}" for k, v in self.conditions.items()),
            soft_wrap=True,
        )

    def as_json(self) -> dict[str, object]:
        return {
            "title": self.title,
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "conditions": self.conditions,
            "rows": [
                {
                    **asdict(row),
                    "vs_raw": row.vs_raw,
                    "vs_peer": row.vs_peer,
                    "met": row.met,
                }
                for row in self.rows
            ],
        }

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(), indent=2) + "\n")
