"""``up``, ``status``, ``migrate``, ``asyncapi`` and ``demo``: run the system and look at it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
from contextlib import AsyncExitStack
from enum import StrEnum
from typing import Annotated

import asyncpg
import typer
from rich.table import Table

from orchestrator.bootstrap import (
    Endpoints,
    connect_nats,
    gateway,
    orchestrator,
    privacy,
    read_endpoints,
    read_side,
    servers,
    telemetry_for,
)
from orchestrator.cli.common import (
    console,
    endpoints_or_exit,
    load_settings,
    redact,
    run,
    until_signalled,
)
from orchestrator.errors import CheckoutError
from orchestrator.http.api_keys import ApiKeys, Scope
from orchestrator.jetstream.command_service import DURABLE
from orchestrator.jetstream.connection import nats_options
from orchestrator.logs import configure_logging
from orchestrator.providers.registry import configured_providers
from orchestrator.settings import Settings
from orchestrator.telemetry import instrumented
from projections import migrate

__all__ = ["Role", "asyncapi_command", "demo", "migrate_command", "status", "up"]


class Role(StrEnum):
    """What one `up` process runs; `all` is everything in one process."""

    ALL = "all"
    COMMANDS = "commands"  # command handlers (the work-queue consumer)
    PROJECTORS = "projectors"  # projector workers (no HTTP)
    API = "api"  # HTTP commands, webhooks and queries; webhook worker; settlement


_READY = "checkout orchestrator up"
_WORKER_START_SECONDS = 60.0
_WORKER_STOP_SECONDS = 15.0


async def _command_worker(endpoints: Endpoints) -> asyncio.subprocess.Process:
    """One more `up --role commands` process on the same servers and environment; returns
    once it said it is up."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from orchestrator.cli import app; app()",
        "up", "--role", "commands", "--workers", "1",
        env={**os.environ, "NATS_URL": endpoints.nats_url, "DATABASE_URL": endpoints.database_url},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None  # noqa: S101 - asked for above
    async with asyncio.timeout(_WORKER_START_SECONDS):
        while _READY not in (await process.stdout.readline()).decode(errors="replace"):
            if process.stdout.at_eof():
                raise CheckoutError(f"a command worker ended on start (exit {process.returncode})")
    return process


async def _stopped(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()  # `up` stops on SIGTERM: its commands in hand finish first
    try:
        async with asyncio.timeout(_WORKER_STOP_SECONDS):
            await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()


async def _more_workers(count: int, endpoints: Endpoints, stack: AsyncExitStack) -> None:
    """``count`` command workers beside this process's own, stopped with it."""
    started = await asyncio.gather(
        *(_command_worker(endpoints) for _ in range(count)), return_exceptions=True
    )
    for process in started:
        if isinstance(process, asyncio.subprocess.Process):
            stack.push_async_callback(_stopped, process)
    for failure in started:
        if isinstance(failure, BaseException):
            raise failure


async def _serve(
    settings: Settings,
    endpoints: Endpoints,
    *,
    once: bool,
    sandbox: bool,
    role: Role = Role.ALL,
    workers: int = 1,
) -> None:
    async with AsyncExitStack() as stack:
        telemetry = telemetry_for(settings)
        stack.callback(telemetry.shutdown)
        stack.enter_context(instrumented(telemetry))
        providers = configured_providers(settings)
        if sandbox:
            # the simulators load only when asked for: production roles never import them
            from orchestrator.sandbox.fleet import SandboxFleet  # noqa: PLC0415

            fleet = await stack.enter_async_context(SandboxFleet())
            providers = fleet.providers
        for adapter in providers.values() if not sandbox else ():
            stack.push_async_callback(adapter.aclose)
        health = None
        personal = None
        if role is not Role.API:  # the commands seal personal data, the projectors open it
            personal = await stack.enter_async_context(privacy(settings, endpoints))
        if role in (Role.ALL, Role.COMMANDS):
            system = await stack.enter_async_context(
                orchestrator(
                    settings,
                    endpoints.nats_url,
                    providers=providers,
                    telemetry=telemetry,
                    personal=personal,
                )
            )
            health = system.health
            await _more_workers(workers - 1, endpoints, stack)
        http_url = "-"
        if role is not Role.COMMANDS:
            read = await stack.enter_async_context(
                read_side(
                    settings,
                    endpoints,
                    run_projector=role is not Role.API,
                    serve_http=False,
                    telemetry=telemetry,
                    personal=personal,
                )
            )
            if role is not Role.PROJECTORS:
                gw = await stack.enter_async_context(
                    gateway(
                        settings, endpoints, read, providers, telemetry=telemetry, health=health
                    )
                )
                http_url = gw.http_url
                if sandbox:
                    fleet.point_webhooks_at(gw.http_url)
                if sandbox and settings.api_auth == "required":
                    key = await ApiKeys(read.pool).create(Scope.WRITE, "up --sandbox")
                    console.print(f"sandbox API key (write): {key.plaintext}", soft_wrap=True)
        extra = f", {workers} command workers" if workers > 1 and role is not Role.API else ""
        console.print(
            f"[green]checkout orchestrator up[/green] ({role.value}{extra})  "
            f"NATS {endpoints.nats_url}"
            f"{' (embedded)' if endpoints.embedded_nats else ''}  "
            f"Postgres {redact(endpoints.database_url)}"
            f"{' (embedded)' if endpoints.embedded_postgres else ''}  "
            f"HTTP {http_url}  providers: "
            f"{', '.join(p.value for p in providers) or 'none (create records requests only)'}"
            f"{' (sandbox simulators)' if sandbox else ''}"
        )
        # what start-up built lives as long as the process: out of the collector's sight, a
        # full collection no longer walks it (a pause of tens of ms on a busy worker)
        gc.collect()
        gc.freeze()
        if not once:
            await until_signalled()


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
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="command workers: processes taking commands off the queue (this one and "
            "N-1 more `up --role commands`); 0: one per core",
        ),
    ] = 1,
) -> None:
    """Start the servers (embedded when NATS_URL / DATABASE_URL are unset), the command
    handlers, projectors, the HTTP API (queries, commands, webhooks) and settlement."""
    if sandbox and role is not Role.ALL:
        console.print("[red]--sandbox[/red] runs with --role all only")
        raise typer.Exit(2)
    if sandbox and workers != 1:
        console.print("[red]--sandbox[/red] runs one command worker (the simulators live in it)")
        raise typer.Exit(2)
    workers = workers or os.cpu_count() or 1
    settings = load_settings()
    configure_logging(settings.log_format, verbose=verbose)
    try:
        with servers(settings) as endpoints:
            asyncio.run(
                _serve(settings, endpoints, once=once, sandbox=sandbox, role=role, workers=workers)
            )
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None


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
        table.add_row("Postgres", f"{redact(endpoints.database_url)}  PostgreSQL {version}")
    except (OSError, asyncpg.PostgresError) as exc:
        table.add_row("Postgres", f"[red]unreachable[/red] {type(exc).__name__}")
    return table


def status() -> None:
    """Show the servers, the streams and the commands waiting to be handled."""
    settings = load_settings()
    endpoints = read_endpoints(settings)
    if endpoints is None:
        console.print("nothing running: start it with `checkout-orchestrator up`")
        raise typer.Exit(1)
    try:
        console.print(asyncio.run(_status(settings, endpoints)))
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(1) from None


def migrate_command() -> None:
    """Apply the database migrations not applied yet (also done by `up`)."""
    endpoints = endpoints_or_exit(load_settings())

    async def main() -> None:
        applied = await migrate(endpoints.database_url, also=("orchestrator",))
        console.print(f"applied {', '.join(applied)}" if applied else "schema is up to date")

    run(main())


def asyncapi_command() -> None:
    """Print the AsyncAPI 3.0 document of the NATS surface (commands, replies, events)."""
    from orchestrator.jetstream.asyncapi import asyncapi_json  # noqa: PLC0415 - builds a docs broker

    typer.echo(asyncapi_json(load_settings().layout()), nl=False)


def demo(
    sessions: Annotated[int, typer.Option(min=10, max=1000, help="checkouts to open")] = 100,
    seed: Annotated[int, typer.Option(help="the dice of who pays, fails or lets expire")] = 7,
) -> None:
    """Run everything with the provider simulators, open ~100 checkouts across currencies
    and regions, settle them, show what happened, and stop (the main job)."""
    from orchestrator.sandbox.demo import run_demo  # noqa: PLC0415 - only this command needs it

    settings = Settings()
    configure_logging(settings.log_format)
    report = run_demo(settings, console, count=sessions, seed=seed)
    console.print(
        f"[green]done[/green] in {report.seconds:.1f} s: {report.opened} opened, "
        f"{report.rejected} rejected; driven {report.outcomes}; read model {report.statuses}"
    )
