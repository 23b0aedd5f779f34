"""``projections run | status | rebuild | replay-parked``: the read models' workers, their
progress, rebuilds, and the events they parked (applied again after a fix)."""

from __future__ import annotations

from typing import Annotated

import asyncpg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.bootstrap import connect_nats, event_source, privacy, read_side
from orchestrator.cli.common import (
    console,
    endpoints_or_exit,
    load_settings,
    run,
    until_signalled,
    with_pool,
)
from orchestrator.jetstream.connection import nats_options
from orchestrator.logs import configure_logging
from projections import (
    PROJECTION_NAMES,
    RebuildProgress,
    StatusReport,
    rebuild,
    replay_parked,
    status_report,
)
from projections.status import CheckpointStatus

__all__ = ["projections_app"]

projections_app = typer.Typer(
    help="Read models: run projectors, see their status, rebuild.",
    no_args_is_help=True,
)


@projections_app.command("run")
def projections_run(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Run one projector worker (no HTTP) until SIGINT/SIGTERM; start more to scale out."""
    settings = load_settings()
    configure_logging(settings.log_format, verbose=verbose)
    endpoints = endpoints_or_exit(settings)

    async def main() -> None:
        async with read_side(settings, endpoints, serve_http=False):
            await until_signalled()

    run(main())


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
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)

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

    run(main())


@projections_app.command("replay-parked")
def projections_replay_parked(
    name: Annotated[
        str | None, typer.Option("--projection", help=f"one of {', '.join(PROJECTION_NAMES)}")
    ] = None,
) -> None:
    """Apply the parked events again (after fixing their cause), oldest first, each once.

    Exits 1 while some still fail: they stay parked, with their new error."""
    if name is not None and name not in PROJECTION_NAMES:
        console.print(f"[red]unknown projection {name!r}[/red]")
        raise typer.Exit(2)

    async def replay(pool: asyncpg.Pool) -> int:
        outcome = await replay_parked(pool, projection=name)
        console.print(f"replayed: {outcome.replayed} event(s)")
        if not outcome.still_parked:
            return 0
        table = Table(title=f"still parked ({len(outcome.still_parked)})")
        for column in ("sequence", "projection", "type", "error"):
            table.add_column(column)
        for event in outcome.still_parked:
            table.add_row(
                str(event.sequence), event.projection, event.event_type or "?", event.error
            )
        console.print(table)
        return 1

    if with_pool(replay):
        raise typer.Exit(1)


@projections_app.command("rebuild")
def projections_rebuild(
    name: Annotated[str, typer.Argument(help=f"one of {', '.join(PROJECTION_NAMES)}")],
) -> None:
    """Refill NAME from the first event beside the serving version, then switch reads to it."""
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)

    async def main() -> None:
        async with (
            read_side(settings, endpoints, run_projector=False, serve_http=False) as side,
            privacy(settings, endpoints) as personal,
        ):
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
                    personal=personal.opener,
                )
        console.print(
            f"{name}: version {result.old_version} -> {result.new_version}, "
            f"{result.events} events in {result.seconds:.1f} s "
            f"(switch {result.switch_seconds * 1000:.0f} ms, {result.gap_events} applied in it)"
        )

    run(main())
