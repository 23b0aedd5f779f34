"""`checkout-orchestrator bench` (and the hidden raw worker it starts)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from orchestrator.bench.commands import raw_worker
from orchestrator.bench.projection import raw_follow
from orchestrator.bench.runner import SCENARIOS, BenchOptions, run_bench
from orchestrator.bootstrap import connect_nats, event_source
from orchestrator.nats_connection import nats_options
from orchestrator.settings import Settings

__all__ = ["bench", "bench_raw_projector", "bench_raw_worker"]

console = Console(width=160)


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
