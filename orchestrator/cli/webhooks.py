"""``checkout-orchestrator webhooks ...``: look at the inbox, replay it after a bug fix."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import console, with_pool
from orchestrator.webhooks.inbox import UnresolvedRow, WebhookInbox

__all__ = ["webhooks_app"]

webhooks_app = typer.Typer(help="The webhook inbox: status and replay.", no_args_is_help=True)


@webhooks_app.command("status")
def webhooks_status() -> None:
    """Count the inbox rows by status (pending, done, ignored, unresolved, rejected), and
    list the newest unresolved ones (held, answered 2xx, waiting for reconciliation)."""
    counts: dict[str, int] = with_pool(lambda pool: WebhookInbox(pool).counts())
    table = Table(title="webhook inbox")
    table.add_column("status")
    table.add_column("rows", justify="right")
    for name, count in sorted(counts.items()):
        table.add_row(name, str(count))
    console.print(table)
    if counts.get("unresolved"):
        held: list[UnresolvedRow] = with_pool(lambda pool: WebhookInbox(pool).unresolved())
        console.print(_unresolved_table(held))


def _unresolved_table(rows: list[UnresolvedRow]) -> Table:
    table = Table(title="unresolved (newest first)")
    for column in ("id", "provider", "event id", "received", "why"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.provider,
            row.event_id,
            f"{row.received_at:%Y-%m-%d %H:%M:%S}",
            row.outcome,
        )
    return table


@webhooks_app.command("replay")
def webhooks_replay(
    provider: Annotated[str | None, typer.Option(help="only this provider's webhooks")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="only webhooks received at or after this instant")
    ] = None,
) -> None:
    """Mark processed webhooks pending again; a running `up` re-processes them (the same
    command ids: what already took effect is not applied twice)."""
    reopened: int = with_pool(
        lambda pool: WebhookInbox(pool).reopen(provider=provider, since=since)
    )
    console.print(f"{reopened} webhook(s) queued for re-processing")
