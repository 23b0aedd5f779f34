"""``checkout-orchestrator``: run the system and look at it.

    checkout-orchestrator up       servers (embedded unless configured) + command handlers
    checkout-orchestrator status   servers, streams, queued commands
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from orchestrator.bootstrap import (
    Endpoints,
    connect_nats,
    orchestrator,
    read_endpoints,
    servers,
)
from orchestrator.command_service import DURABLE
from orchestrator.errors import CheckoutError
from orchestrator.settings import Settings

__all__ = ["app"]

app = typer.Typer(help="Event-sourced, multi-provider checkout orchestrator.", no_args_is_help=True)
console = Console()


def _settings() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(settings: Settings, endpoints: Endpoints, *, once: bool) -> None:
    async with orchestrator(settings, endpoints.nats_url):
        console.print(
            f"[green]checkout orchestrator up[/green]  NATS {endpoints.nats_url}"
            f"{' (embedded)' if endpoints.embedded_nats else ''}  "
            f"Postgres {_redact(endpoints.database_url)}"
            f"{' (embedded)' if endpoints.embedded_postgres else ''}"
        )
        if not once:
            await _until_signalled()


@app.command()
def up(
    once: Annotated[
        bool, typer.Option(help="start everything, report, and stop (a smoke check)")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start the servers (embedded when NATS_URL / DATABASE_URL are unset) and the handlers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    settings = _settings()
    try:
        with servers(settings) as endpoints:
            asyncio.run(_serve(settings, endpoints, once=once))
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None


def _redact(dsn: str) -> str:
    """A DSN without its password, for printing."""
    scheme, sep, rest = dsn.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return dsn
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"


async def _status(settings: Settings, endpoints: Endpoints) -> Table:
    table = Table(title="checkout orchestrator")
    table.add_column("part")
    table.add_column("state")
    nc = await connect_nats(endpoints.nats_url, "checkout-status")
    try:
        table.add_row("NATS", f"{endpoints.nats_url}  nats-server {nc.connected_server_version}")
        js = nc.jetstream()
        layout = settings.layout()
        for name in (layout.events_stream, layout.commands_stream):
            with contextlib.suppress(Exception):
                info = await js.stream_info(name)
                table.add_row(
                    f"stream {name}",
                    f"{info.state.messages} messages, last sequence {info.state.last_seq}",
                )
        with contextlib.suppress(Exception):
            consumer = await js.consumer_info(layout.commands_stream, DURABLE)
            table.add_row("commands waiting", str(consumer.num_pending + consumer.num_ack_pending))
    finally:
        await nc.close()
    try:
        conn = await asyncpg.connect(endpoints.database_url, timeout=5)
        version = await conn.fetchval("show server_version")
        await conn.close()
        table.add_row("Postgres", f"{_redact(endpoints.database_url)}  PostgreSQL {version}")
    except (OSError, asyncpg.PostgresError) as exc:
        table.add_row("Postgres", f"[red]unreachable[/red] {type(exc).__name__}")
    return table


@app.command()
def status() -> None:
    """Show the servers, the streams and the commands waiting to be handled."""
    settings = _settings()
    endpoints = read_endpoints(settings)
    if endpoints is None:
        console.print("nothing running: start it with `checkout-orchestrator up`")
        raise typer.Exit(1)
    try:
        console.print(asyncio.run(_status(settings, endpoints)))
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(1) from None


# --- route ------------------------------------------------------------------------------------
# Kept together at the end of the module (imports included) so that edits above merge cleanly.
from pathlib import Path  # noqa: E402

from ulid import ULID  # noqa: E402

from events.catalog import RoutingExplanation  # noqa: E402
from events.values import Mode, Provider  # noqa: E402
from orchestrator.errors import NoRoute  # noqa: E402
from orchestrator.routing import RouteRequest, load_rules  # noqa: E402
from orchestrator.routing import route as route_checkout  # noqa: E402
from orchestrator.routing.report import (  # noqa: E402
    describe_invalid,
    explanation_table,
    parse_metadata,
)


@app.command()
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
