"""Routing for people: the CLI's input parsing and a rich rendering of an explanation."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError
from rich.table import Table

from events.catalog import RoutingExplanation

__all__ = ["describe_invalid", "explanation_table", "parse_metadata"]


def parse_metadata(pairs: Iterable[str]) -> dict[str, str]:
    """``["product_type=digital", "k=v=w"]`` -> ``{"product_type": "digital", "k": "v=w"}``."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"metadata must be key=value, got {pair!r}")
        metadata[key] = value
    return metadata


def describe_invalid(error: ValueError) -> str:
    """One line per problem, without pydantic's links: ``currency: unknown currency 'XXY'``."""
    if not isinstance(error, ValidationError):
        return str(error)
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc'])}: "
        f"{item['msg'].removeprefix('Value error, ')}"
        for item in error.errors(include_url=False)
    )


def explanation_table(explanation: RoutingExplanation) -> Table:
    """Every provider the matched rule named: chosen, fallback, or dropped and why."""
    table = Table()
    table.add_column("#", justify="right")
    table.add_column("provider")
    table.add_column("outcome")
    table.add_column("why")
    for rank, provider in enumerate(explanation.candidates, start=1):
        outcome = "[green]chosen[/green]" if rank == 1 else "fallback"
        table.add_row(str(rank), provider.value, outcome, "")
    for dropped in explanation.dropped:
        table.add_row("", dropped.provider.value, "[red]dropped[/red]", dropped.reason)
    return table
