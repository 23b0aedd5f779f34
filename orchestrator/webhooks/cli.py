"""``checkout-orchestrator webhooks ...``: look at the inbox, replay it after a bug fix."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from orchestrator.bootstrap import Endpoints, read_endpoints
from orchestrator.settings import Settings
from orchestrator.webhooks.inbox import WebhookInbox
from projections import migrate

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(help="The webhook inbox: status and replay.", no_args_is_help=True)
console = Console()


def _endpoints() -> Endpoints:
    endpoints = read_endpoints(Settings())
    if endpoints is None:
        console.print("no servers: start them with `checkout-orchestrator up`")
        raise typer.Exit(1)
    return endpoints


async def _with_inbox(endpoints: Endpoints, use: Any) -> Any:
    await migrate(endpoints.database_url, also=("orchestrator",))
    pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
    try:
        return await use(WebhookInbox(pool))
    finally:
        await pool.close()


def _run(main: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(main)


@webhooks_app.command("status")
def webhooks_status() -> None:
    """Count the inbox rows by status (pending, done, ignored, unresolved, rejected)."""
    counts: dict[str, int] = _run(_with_inbox(_endpoints(), lambda inbox: inbox.counts()))
    table = Table(title="webhook inbox")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    console.print(table)


@webhooks_app.command("replay")
def webhooks_replay(
    provider: Annotated[str | None, typer.Option(help="only this provider's webhooks")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="only webhooks received at or after this instant")
    ] = None,
) -> None:
    """Mark processed webhooks pending again; a running `up` re-processes them (the same
    command ids: what already took effect is not applied twice)."""
    reopened: int = _run(
        _with_inbox(_endpoints(), lambda inbox: inbox.reopen(provider=provider, since=since))
    )
    console.print(f"{reopened} webhook(s) queued for re-processing")
