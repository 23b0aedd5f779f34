"""``python -m bench``: the benchmark, run from a checkout of the repository.

python -m bench run                  every scenario beside its raw baseline and the peer
python -m bench projections          projector catch-up and lag on the running servers
python -m bench raw-worker           the raw command loop `run` compares with (it starts it)
python -m bench raw-projector        the raw follower `run` compares with (it starts it)
python -m bench stripe-sim           the Stripe simulator at a set latency (`run` starts it)
python -m bench privacy              appends and catch-up with and without sealing personal data

Not part of the installed product: nothing under orchestrator/, events/ or projections/
imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bench.commands import raw_worker
from bench.measure import load_sessions, measure_catch_up, measure_lag, observe_catch_up
from bench.processes import cli_process
from bench.projection import raw_follow
from bench.runner import SCENARIOS, BenchOptions, run_bench
from bench.scratch import Scratch, scratch
from orchestrator.bootstrap import connect_nats, event_source, projector_settings, read_endpoints
from orchestrator.jetstream.connection import nats_options
from orchestrator.settings import Settings

__all__ = ["app"]

console = Console(width=160)
app = typer.Typer(help="Benchmarks beside raw baselines and a peer.", no_args_is_help=True)


@app.command("run")
def bench(  # noqa: PLR0913, PLR0917 - one option per knob of the run
    sessions: Annotated[
        int, typer.Option(help="sessions of the append and catch-up loads")
    ] = 5_000,
    commands: Annotated[int, typer.Option(help="commands of the throughput runs")] = 5_000,
    seconds: Annotated[float, typer.Option(help="length of each fixed-rate load")] = 8.0,
    rates: Annotated[str, typer.Option(help="lag loads, events/s, comma-separated")] = (
        "1000,2000,5000"
    ),
    concurrency: Annotated[int, typer.Option(help="operations in flight")] = 256,
    only: Annotated[
        str, typer.Option(help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    ] = "",
    sync_interval: Annotated[
        str | None,
        typer.Option(help="embedded nats-server fsync policy ('always'); default: the server's"),
    ] = None,
    peer: Annotated[bool, typer.Option(help="run the eventsourcing peer")] = True,
    growth_sizes: Annotated[
        str, typer.Option(help="stream sizes (events) the per-command cost is measured at")
    ] = "10000,1000000",
    rebuild_sizes: Annotated[
        str, typer.Option(help="stream sizes (events) a rebuild is timed at")
    ] = "10000,30000,100000",
    plot: Annotated[Path, typer.Option(help="where to draw the growth curves (PNG)")] = Path(
        "bench-growth.png"
    ),
    profile: Annotated[
        Path | None,
        typer.Option(help="write py-spy flame graphs of the role processes into this directory"),
    ] = None,
    json_path: Annotated[
        Path, typer.Option("--json", help="where to write the figures as JSON")
    ] = Path("bench.json"),
) -> None:
    """Every scenario next to its raw nats-py / asyncpg baseline and the eventsourcing peer.

    Runs on embedded servers in a temporary directory unless NATS_URL / DATABASE_URL are
    set; each scenario gets its own scratch stream and database.
    """
    unknown = {name for name in only.split(",") if name} - set(SCENARIOS)
    if unknown:
        raise typer.BadParameter(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    options = BenchOptions(
        sessions=sessions,
        commands=commands,
        seconds=seconds,
        lag_rates=_numbers(rates),
        concurrency=concurrency,
        peer=peer,
        sync_interval=sync_interval,
        only=tuple(name for name in only.split(",") if name),
        growth_sizes=_numbers(growth_sizes),
        rebuild_sizes=_numbers(rebuild_sizes),
        plot=plot,
        profile=profile,
    )
    report = run_bench(Settings(), options, console)
    report.print(console)
    report.write_json(json_path)
    console.print(f"figures written to {json_path}")


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, not {text!r}") from None


@app.command("raw-projector")
def bench_raw_projector() -> None:
    """The raw nats-py / asyncpg follower `bench` compares the projection lag with."""
    settings = Settings()
    if settings.nats_url is None or settings.database_url is None:
        raise typer.BadParameter("NATS_URL and DATABASE_URL are required")
    url, dsn = settings.nats_url, settings.database_url

    async def main() -> None:
        nc = await connect_nats(url, "checkout-bench-raw-projector", nats_options(settings))
        console.print("raw projector up")
        await raw_follow(nc, dsn, event_source(settings))

    asyncio.run(main())


@app.command("raw-worker")
def bench_raw_worker() -> None:
    """The raw nats-py command loop `bench` compares the command path with."""
    settings = Settings()
    if settings.nats_url is None:
        raise typer.BadParameter("NATS_URL is required")
    url = settings.nats_url

    async def main() -> None:
        nc = await connect_nats(url, "checkout-bench-raw", nats_options(settings))
        console.print("raw worker up")
        await raw_worker(nc, settings.layout())

    asyncio.run(main())


@app.command("stripe-sim")
def bench_stripe_sim(
    latency: Annotated[float, typer.Option(help="seconds each API call waits")] = 0.0,
) -> None:
    """The Stripe simulator in a process of its own (so its work does not share the load
    generator's event loop), answering every API call after ``latency`` seconds."""
    from orchestrator.sandbox.stripe_sim import StripeSimulator  # noqa: PLC0415

    async def main() -> None:
        async with StripeSimulator() as stripe:
            stripe.faults.set(latency_seconds=latency)
            # the sandbox's own test credentials, for the `up` the bench points at it
            console.print(
                f"stripe simulator up {stripe.base_url} {stripe.api_key} {stripe.webhook_secret}",
                soft_wrap=True,
            )
            await asyncio.Event().wait()

    asyncio.run(main())


@app.command("projections")
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
    settings = Settings()
    endpoints = read_endpoints(settings)
    if endpoints is None:
        raise typer.BadParameter(
            "no servers: start `checkout-orchestrator up`, or set NATS_URL and DATABASE_URL"
        )
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

    asyncio.run(main())


@contextlib.asynccontextmanager
async def _projector_process(s: Scratch, *, count: int = 1) -> AsyncIterator[None]:
    """``count`` `projections run` processes on the scratch stream and database."""
    environment = {**s.environment(), "CHECKOUT_PROJECTOR_NAME": "measure"}
    async with AsyncExitStack() as stack:
        for _ in range(count):
            await stack.enter_async_context(cli_process(["projections", "run"], environment))
        yield


@app.command("privacy")
def privacy(
    sessions: Annotated[int, typer.Option(help="sessions appended and projected")] = 2_000,
    repeat: Annotated[int, typer.Option(min=1, help="runs of each kind, alternated")] = 2,
) -> None:
    """What sealing personal data costs: appends and catch-up, in clear and sealed, on
    embedded servers (docs/privacy.md)."""
    from bench.privacy import measure_privacy  # noqa: PLC0415 - only this command needs it

    cost = measure_privacy(Settings(), sessions, repeat)
    table = Table(
        title=f"sealing personal data: {cost.events:,} events of {sessions:,} sessions, "
        f"best of {repeat} alternated runs each"
    )
    for column in ("scenario", "clear (events/s)", "sealed (events/s)", "sealed/clear"):
        table.add_column(column, justify="right")
    for name, clear, sealed in (
        ("load + append, event by event, 64 sessions in flight", cost.append_clear,
         cost.append_sealed),
        ("projection catch-up, 4 read models", cost.catch_up_clear, cost.catch_up_sealed),
    ):  # fmt: skip
        table.add_row(name, f"{clear:,.0f}", f"{sealed:,.0f}", f"{sealed / clear:.2f}x")
    console.print(table)
