"""A backtest for people and machines: rich tables for the CLI, plain rows for JSON and
the console. Rates are fractions of each provider's recorded checkouts."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from orchestrator.routing.backtest import BacktestReport, Move

__all__ = ["backtest_json", "move_rows", "moves_table", "outcome_rows", "outcomes_table"]

NOWHERE = "(no route)"
NONE_RECORDED = "(none)"


def _sort_key(item: tuple[Move, int]) -> tuple[int, str, str]:
    move, count = item
    return (-count, move.currency, move.country or "")


def move_rows(report: BacktestReport) -> list[dict[str, Any]]:
    """One row per (currency, country, from, to), most checkouts first."""
    return [
        {
            "currency": move.currency,
            "country": move.country,
            "from": move.from_provider.value if move.from_provider else None,
            "to": move.to_provider.value if move.to_provider else None,
            "sessions": count,
        }
        for move, count in sorted(report.moves.items(), key=_sort_key)
    ]


def outcome_rows(report: BacktestReport) -> list[dict[str, Any]]:
    rows = []
    for provider, outcome in sorted(
        report.outcomes.items(), key=lambda item: item[0].value if item[0] else ""
    ):
        rows.append(
            {
                "provider": provider.value if provider else None,
                "sessions": outcome.sessions,
                "paid": outcome.paid,
                "expired": outcome.expired,
                "failed": outcome.failed,
                "open": outcome.open,
                "paid_rate": round(outcome.rate(outcome.paid), 4),
                "expired_rate": round(outcome.rate(outcome.expired), 4),
                "failed_rate": round(outcome.rate(outcome.failed), 4),
            }
        )
    return rows


def backtest_json(report: BacktestReport) -> dict[str, Any]:
    return {
        "rules_version": report.rules_version,
        "replayed": report.replayed,
        "changed": report.changed,
        "unchanged": report.unchanged,
        "unroutable": report.unroutable,
        "moves": move_rows(report),
        "outcomes": outcome_rows(report),
    }


def moves_table(report: BacktestReport) -> Table:
    table = Table(title="would route differently (from the provider that took it)")
    for column in ("currency", "country", "from", "to", "sessions"):
        table.add_column(column, justify="right" if column == "sessions" else "left")
    for row in move_rows(report):
        table.add_row(
            row["currency"], row["country"] or "-", row["from"] or NONE_RECORDED,
            row["to"] or NOWHERE, str(row["sessions"]),
        )  # fmt: skip
    return table


def outcomes_table(report: BacktestReport) -> Table:
    table = Table(title="recorded outcomes per provider")
    for column in ("provider", "sessions", "paid", "expired", "failed", "open"):
        table.add_column(column, justify="left" if column == "provider" else "right")
    for row in outcome_rows(report):
        table.add_row(
            row["provider"] or NONE_RECORDED, str(row["sessions"]),
            f"{row['paid_rate']:.0%}", f"{row['expired_rate']:.0%}",
            f"{row['failed_rate']:.0%}", str(row["open"]),
        )  # fmt: skip
    return table
