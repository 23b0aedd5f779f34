"""``checkout-orchestrator``: run the system and look at it.

checkout-orchestrator up [--sandbox]   everything: servers, handlers, projectors, HTTP
checkout-orchestrator up --role R      one role: commands, projectors or api (deploy/)
checkout-orchestrator status           servers, streams, queued commands
checkout-orchestrator route ...        what the router would choose, and why
checkout-orchestrator migrate          database migrations
checkout-orchestrator projections ...  run / status / rebuild / measure read models
checkout-orchestrator webhooks ...     the webhook inbox: status, replay
checkout-orchestrator api-keys ...     the HTTP API's keys: create, revoke, list
checkout-orchestrator bench            benchmarks beside raw baselines and a peer
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack
from enum import StrEnum
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.api_keys import ApiKeys, Scope
from orchestrator.api_keys_cli import api_keys_app
from orchestrator.bench.cli import bench, bench_raw_projector, bench_raw_worker
from orchestrator.bench.processes import cli_process
from orchestrator.bootstrap import (
    Endpoints,
    Scratch,
    connect_nats,
    event_source,
    gateway,
    orchestrator,
    projector_settings,
    read_endpoints,
    read_side,
    scratch,
    servers,
    telemetry_for,
)
from orchestrator.command_service import DURABLE
from orchestrator.errors import CheckoutError
from orchestrator.nats_connection import nats_options
from orchestrator.providers.registry import configured_providers
from orchestrator.sandbox.fleet import SandboxFleet
from orchestrator.settings import Settings
from orchestrator.telemetry import instrumented
from orchestrator.webhooks.cli import webhooks_app
from projections import (
    PROJECTION_NAMES,
    ProjectionError,
    RebuildProgress,
    StatusReport,
    load_sessions,
    measure_catch_up,
    measure_lag,
    migrate,
    observe_catch_up,
    rebuild,
    status_report,
)
from projections.status import CheckpointStatus

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


class Role(StrEnum):
    """What one `up` process runs; `all` is everything in one process."""

    ALL = "all"
    COMMANDS = "commands"  # command handlers (the work-queue consumer)
    PROJECTORS = "projectors"  # projector workers (no HTTP)
    API = "api"  # HTTP commands, webhooks and queries; webhook worker; settlement


async def _serve(
    settings: Settings, endpoints: Endpoints, *, once: bool, sandbox: bool, role: Role = Role.ALL
) -> None:
    async with AsyncExitStack() as stack:
        telemetry = telemetry_for(settings)
        stack.callback(telemetry.shutdown)
        stack.enter_context(instrumented(telemetry))
        providers = configured_providers(settings)
        if sandbox:
            fleet = await stack.enter_async_context(SandboxFleet())
            providers = fleet.providers
        for adapter in providers.values() if not sandbox else ():
            stack.push_async_callback(adapter.aclose)
        if role in (Role.ALL, Role.COMMANDS):
            await stack.enter_async_context(
                orchestrator(settings, endpoints.nats_url, providers=providers, telemetry=telemetry)
            )
        http_url = "-"
        if role is not Role.COMMANDS:
            read = await stack.enter_async_context(
                read_side(
                    settings,
                    endpoints,
                    run_projector=role is not Role.API,
                    serve_http=False,
                    telemetry=telemetry,
                )
            )
            if role is not Role.PROJECTORS:
                gw = await stack.enter_async_context(
                    gateway(settings, endpoints, read, providers, telemetry=telemetry)
                )
                http_url = gw.http_url
                if sandbox:
                    fleet.point_webhooks_at(gw.http_url)
                if sandbox and settings.api_auth == "required":
                    key = await ApiKeys(read.pool).create(Scope.WRITE, "up --sandbox")
                    console.print(f"sandbox API key (write): {key.plaintext}", soft_wrap=True)
        console.print(
            f"[green]checkout orchestrator up[/green] ({role.value})  NATS {endpoints.nats_url}"
            f"{' (embedded)' if endpoints.embedded_nats else ''}  "
            f"Postgres {_redact(endpoints.database_url)}"
            f"{' (embedded)' if endpoints.embedded_postgres else ''}  "
            f"HTTP {http_url}  providers: "
            f"{', '.join(p.value for p in providers) or 'none (create records requests only)'}"
            f"{' (sandbox simulators)' if sandbox else ''}"
        )
        if not once:
            await _until_signalled()


@app.command()
def up(
    once: Annotated[
        bool, typer.Option(help="start everything, report, and stop (a smoke check)")
    ] = False,
    sandbox: Annotated[
        bool, typer.Option(help="run the four provider simulators and use them as providers")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    role: Annotated[
        Role,
        typer.Option(
            case_sensitive=False,
            help="run one role only (deploy/ scales commands, projectors and api apart)",
        ),
    ] = Role.ALL,
) -> None:
    """Start the servers (embedded when NATS_URL / DATABASE_URL are unset), the command
    handlers, projectors, the HTTP API (queries, commands, webhooks) and settlement."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    if sandbox and role is not Role.ALL:
        console.print("[red]--sandbox[/red] runs with --role all only")
        raise typer.Exit(2)
    settings = _settings()
    try:
        with servers(settings) as endpoints:
            asyncio.run(_serve(settings, endpoints, once=once, sandbox=sandbox, role=role))
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
    nc = await connect_nats(endpoints.nats_url, "checkout-status", nats_options(settings))
    try:
        version = nc.connected_server_version
        server = f"nats-server {version.major}.{version.minor}.{version.patch}"
        table.add_row("NATS", f"{endpoints.nats_url}  {server}")
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


# --- projections: migrate, run, status, rebuild, measure ----------------------------------

projections_app = typer.Typer(
    help="Read models: run projectors, see their status, rebuild, measure.",
    no_args_is_help=True,
)
app.add_typer(projections_app, name="projections")


def _endpoints(settings: Settings) -> Endpoints:
    endpoints = read_endpoints(settings)
    if endpoints is None:
        console.print(
            "no servers: start them with `checkout-orchestrator up`, "
            "or set NATS_URL and DATABASE_URL"
        )
        raise typer.Exit(1)
    return endpoints


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(main)
    except (CheckoutError, ProjectionError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None


@app.command("migrate")
def migrate_command() -> None:
    """Apply the database migrations not applied yet (also done by `up`)."""
    endpoints = _endpoints(_settings())

    async def main() -> None:
        applied = await migrate(endpoints.database_url, also=("orchestrator",))
        console.print(f"applied {', '.join(applied)}" if applied else "schema is up to date")

    _run(main())


@projections_app.command("run")
def projections_run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run one projector worker (no HTTP) until SIGINT/SIGTERM; start more to scale out."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING)
    settings = _settings()
    endpoints = _endpoints(settings)

    async def main() -> None:
        async with read_side(settings, endpoints, serve_http=False):
            await _until_signalled()

    _run(main())


def _status_tables(report: StatusReport) -> tuple[Table, Table]:
    checkpoints = Table(title="checkpoints (per projection version)")
    for column in ("projection", "version", "partitions", "min position", "lag", "owners"):
        checkpoints.add_column(column)
    groups: dict[tuple[str, int, bool], list[CheckpointStatus]] = {}
    for row in report.checkpoints:
        groups.setdefault((row.projection, row.version, row.active), []).append(row)
    for (name, version, active), rows in sorted(groups.items()):
        owners = {row.owner_pid for row in rows if row.owner_pid is not None}
        checkpoints.add_row(
            name,
            f"{version}{'' if active else ' (building)'}",
            str(len(rows)),
            str(min(row.position for row in rows)),
            str(sum(row.pending or 0 for row in rows)),
            f"{len(owners)} worker(s), {sum(r.owner_pid is not None for r in rows)} owned",
        )
    parked = Table(title=f"parked events ({len(report.parked)})")
    for column in ("sequence", "projection", "type", "error"):
        parked.add_column(column)
    for event in report.parked:
        parked.add_row(str(event.sequence), event.projection, event.event_type or "?", event.error)
    return checkpoints, parked


@projections_app.command("status")
def projections_status() -> None:
    """Checkpoints, lag (events not yet applied) and owners per projection; parked events."""
    settings = _settings()
    endpoints = _endpoints(settings)

    async def main() -> None:
        nc = await connect_nats(
            endpoints.nats_url, "checkout-projections-status", nats_options(settings)
        )
        try:
            conn = await asyncpg.connect(endpoints.database_url, timeout=5)
            try:
                report = await status_report(
                    conn, nc, event_source(settings), projector=settings.projector_name
                )
            finally:
                await conn.close()
        finally:
            await nc.close()
        for table in _status_tables(report):
            console.print(table)
        console.print(f"total lag: {report.lag} event(s)")

    _run(main())


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str, typer.Argument(help=f"one of {', '.join(PROJECTION_NAMES)}")],
) -> None:
    """Refill NAME from the first event beside the serving version, then switch reads to it."""
    settings = _settings()
    endpoints = _endpoints(settings)

    async def main() -> None:
        async with read_side(settings, endpoints, run_projector=False, serve_http=False) as side:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task(f"rebuild {name}", total=None)

                def show(step: RebuildProgress) -> None:
                    bar.update(
                        task,
                        completed=step.applied,
                        total=max(step.total, step.applied),
                        description=f"rebuild {name}: {step.phase}",
                    )

                result = await rebuild(
                    name,
                    nc=side.nc,
                    pool=side.pool,
                    dsn=endpoints.database_url,
                    source=event_source(settings),
                    batch_size=settings.projector_batch_size,
                    progress=show,
                )
        console.print(
            f"{name}: version {result.old_version} -> {result.new_version}, "
            f"{result.events} events in {result.seconds:.1f} s "
            f"(switch {result.switch_seconds * 1000:.0f} ms, {result.gap_events} applied in it)"
        )

    _run(main())


@projections_app.command("measure")
def projections_measure(
    sessions: Annotated[int, typer.Option(help="sessions loaded before the catch-up")] = 10_000,
    rates: Annotated[str, typer.Option(help="steady loads, events/s, comma-separated")] = (
        "1000,2000"
    ),
    seconds: Annotated[float, typer.Option(help="length of each steady load")] = 10.0,
    workers: Annotated[
        int, typer.Option(help="catch up with this many `projections run` processes (0: here)")
    ] = 0,
) -> None:
    """Catch-up speed (events/s from empty read models) and lag at steady loads.

    Runs on a scratch stream and a scratch database on the servers (dropped after).
    """
    settings = _settings()
    endpoints = _endpoints(settings)
    wanted = [int(rate) for rate in rates.split(",") if rate.strip()]

    async def main() -> None:
        config = projector_settings(settings, name="measure")
        async with scratch(settings, endpoints) as s:
            events = await load_sessions(s.append, sessions)
            if workers > 0:
                catch_up = await observe_catch_up(
                    nc=s.nc, dsn=s.dsn, source=s.source, events=events,
                    start=lambda: _projector_process(s, count=workers),
                )  # fmt: skip
            else:
                catch_up = await measure_catch_up(
                    nc=s.nc, pool=s.pool, dsn=s.dsn, source=s.source, events=events,
                    settings=config,
                )  # fmt: skip
            console.print(
                f"catch-up: {catch_up.events} events in {catch_up.seconds:.2f} s = "
                f"[bold]{catch_up.events_per_second:,.0f} events/s[/bold]"
            )
            table = Table(title="lag: append acknowledged -> read models committed")
            for column in ("target events/s", "achieved", "events", "p50 ms", "p99 ms", "max ms"):
                table.add_column(column)
            async with _projector_process(s):
                for rate in wanted:
                    lag = await measure_lag(
                        dsn=s.dsn, source=s.source, append=s.append, rate=rate, seconds=seconds
                    )
                    table.add_row(
                        str(rate), f"{lag.achieved_rate:,.0f}", str(lag.events),
                        f"{lag.p50_ms:.1f}", f"{lag.p99_ms:.1f}", f"{lag.max_ms:.1f}",
                    )  # fmt: skip
            console.print(table)

    _run(main())


@contextlib.asynccontextmanager
async def _projector_process(s: Scratch, *, count: int = 1) -> AsyncIterator[None]:
    """``count`` `projections run` processes on the scratch stream and database."""
    environment = {**s.environment(), "CHECKOUT_PROJECTOR_NAME": "measure"}
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(cli_process(["projections", "run"], environment))
        yield


app.add_typer(webhooks_app, name="webhooks")
app.add_typer(api_keys_app, name="api-keys")
app.command("bench")(bench)
app.command("bench-raw-worker", hidden=True)(bench_raw_worker)
app.command("bench-raw-projector", hidden=True)(bench_raw_projector)


@app.command("asyncapi")
def asyncapi_command() -> None:
    """Print the AsyncAPI 3.0 document of the NATS surface (commands, replies, events)."""
    from orchestrator.asyncapi import asyncapi_json  # noqa: PLC0415 - builds a docs broker

    typer.echo(asyncapi_json(_settings().layout()), nl=False)


@app.command("demo")
def demo(
    sessions: Annotated[int, typer.Option(min=10, max=1000, help="checkouts to open")] = 100,
    seed: Annotated[int, typer.Option(help="the dice of who pays, fails or lets expire")] = 7,
) -> None:
    """Run everything with the provider simulators, open ~100 checkouts across currencies
    and regions, settle them, show what happened, and stop (the main job)."""
    from orchestrator.demo import run_demo  # noqa: PLC0415 - only this command needs it

    logging.basicConfig(level=logging.WARNING)
    report = run_demo(Settings(), console, count=sessions, seed=seed)
    console.print(
        f"[green]done[/green] in {report.seconds:.1f} s: {report.opened} opened, "
        f"{report.rejected} rejected; driven {report.outcomes}; read model {report.statuses}"
    )
