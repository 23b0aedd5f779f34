"""``route``: what the router would choose for a checkout, its fallbacks, and why; and
``route backtest``: how candidate rules would have routed the recorded checkouts.

``route`` is a group whose callback is the original command, so ``checkout-orchestrator
route --currency XOF ...`` works as before and ``route backtest --rules candidate.toml``
is its one subcommand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import asyncpg
import typer
from ulid import ULID

from events.catalog import RoutingExplanation
from events.values import Mode, Provider
from orchestrator.cli.common import console, with_pool
from orchestrator.errors import CheckoutError, NoRoute
from orchestrator.routing import RouteRequest, load_rules
from orchestrator.routing import route as route_checkout
from orchestrator.routing.backtest import BacktestReport
from orchestrator.routing.backtest_report import backtest_json, moves_table, outcomes_table
from orchestrator.routing.report import describe_invalid, explanation_table, parse_metadata
from orchestrator.services.backtesting import run_backtest
from orchestrator.settings import Settings
from projections import ReadModels

__all__ = ["route", "route_app"]

route_app = typer.Typer(
    help="What the router would choose for a checkout, and backtests of candidate rules.",
    invoke_without_command=True,
)


@route_app.callback(invoke_without_command=True)
def route(  # noqa: PLR0913, PLR0917 - one parameter per CLI option
    ctx: typer.Context,
    currency: Annotated[str | None, typer.Option(help="ISO 4217 code, e.g. XOF")] = None,
    country: Annotated[str | None, typer.Option(help="customer country, ISO alpha-2")] = None,
    amount: Annotated[int | None, typer.Option(help="minor units (1250 USD = 12.50 $)")] = None,
    mode: Annotated[Mode, typer.Option(case_sensitive=False)] = Mode.PAYMENT,
    metadata: Annotated[list[str] | None, typer.Option(help="key=value, repeatable")] = None,
    session_id: Annotated[str | None, typer.Option(help="weighted splits hash it")] = None,
    rules_path: Annotated[
        Path | None, typer.Option("--rules", help="rules file (default: from settings)")
    ] = None,
    unhealthy: Annotated[
        list[Provider] | None, typer.Option(help="treat as failing now, repeatable")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the explanation as JSON")] = False,
    success_url: Annotated[
        bool, typer.Option(help="the checkout has a success_url (Kong's hosted page needs one)")
    ] = True,
) -> None:
    """Show which provider would take a checkout, its fallbacks, and why (no servers needed)."""
    if ctx.invoked_subcommand is not None:
        return
    if currency is None:
        console.print("[red]missing option[/red] --currency (or a subcommand: backtest)")
        raise typer.Exit(2)
    try:
        request = RouteRequest(
            session_id=session_id or f"cs_{ULID()}",
            currency=currency,
            amount=amount,
            country=country,
            mode=mode,
            metadata=parse_metadata(metadata or ()),
            has_success_url=success_url,
        )
        rules = load_rules(rules_path or Settings().routing_rules_path)
    except ValueError as exc:
        console.print(f"[red]invalid request[/red]: {describe_invalid(exc)}")
        raise typer.Exit(2) from None
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
    health = dict.fromkeys(unhealthy or (), False)
    try:
        decision = route_checkout(rules, request, health)
    except NoRoute as exc:
        _print_routing(request.session_id, exc.explanation, as_json=as_json)
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(1) from None
    _print_routing(request.session_id, decision.explanation, as_json=as_json)


def _print_routing(session_id: str, explanation: RoutingExplanation, *, as_json: bool) -> None:
    if as_json:
        console.print_json(explanation.model_dump_json())
        return
    chosen = explanation.candidates[0].value if explanation.candidates else "none"
    console.print(f"session {session_id}  →  [bold]{chosen}[/bold]")
    console.print(f"rule    {explanation.matched_rule or '(none matched)'}")
    console.print(f"rules   {explanation.rules_version}")
    console.print(explanation_table(explanation))


def _utc(instant: datetime | None) -> datetime | None:
    return instant.replace(tzinfo=UTC) if instant and instant.tzinfo is None else instant


@route_app.command("backtest")
def backtest_command(
    rules_path: Annotated[Path, typer.Option("--rules", help="the candidate rules file")],
    since: Annotated[
        datetime | None, typer.Option(help="only checkouts created from then on (UTC)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many, newest")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="the report as JSON")] = False,
) -> None:
    """Replay the recorded checkouts through candidate rules: how many would route
    differently, from which provider to which, beside each provider's outcomes."""
    try:
        candidate = load_rules(rules_path)
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None
    settings = Settings()

    async def replay(pool: asyncpg.Pool) -> BacktestReport:
        reads = ReadModels(pool, partitions=settings.partitions)
        return await run_backtest(reads, candidate, _utc(since), limit=limit)

    report = with_pool(replay)
    if as_json:
        console.print_json(data=backtest_json(report))
        return
    console.print(
        f"rules {report.rules_version}: {report.replayed} recorded checkouts replayed, "
        f"[bold]{report.changed}[/bold] would route differently"
        f"{f' ({report.unroutable} nowhere)' if report.unroutable else ''}"
    )
    if report.moves:
        console.print(moves_table(report))
    console.print(outcomes_table(report))
