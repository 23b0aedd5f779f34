"""``route``: what the router would choose for a checkout, its fallbacks, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ulid import ULID

from events.catalog import RoutingExplanation
from events.values import Mode, Provider
from orchestrator.cli.common import console
from orchestrator.errors import CheckoutError, NoRoute
from orchestrator.routing import RouteRequest, load_rules
from orchestrator.routing import route as route_checkout
from orchestrator.routing.report import describe_invalid, explanation_table, parse_metadata
from orchestrator.settings import Settings

__all__ = ["route"]


def route(  # noqa: PLR0913, PLR0917 - one parameter per CLI option
    currency: Annotated[str, typer.Option(help="ISO 4217 code, e.g. XOF")],
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
