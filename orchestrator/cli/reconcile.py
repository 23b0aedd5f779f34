"""``checkout-orchestrator reconcile [--dry-run]``: one reconciliation round, now.

Asks each configured provider about the sessions still open here after the quiet period
(``CHECKOUT_RECONCILE_QUIET_SECONDS``) and settles what differs through the command
path, as the round inside ``up`` does; ``--dry-run`` only reports. Every difference is
also written to ``reconciliation_log``; ``--history N`` shows the newest rows of it.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestrator.bootstrap import read_side, reconcile_policy, reconciler
from orchestrator.cli.common import console, endpoints_or_exit, load_settings, run
from orchestrator.client import CheckoutClient
from orchestrator.jetstream.connection import nats_options
from orchestrator.providers.registry import configured_providers
from orchestrator.services.reconciliation import ReconcileReport, ReconciliationLog

__all__ = ["reconcile"]


def reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what differs; send no command")
    ] = False,
    history: Annotated[
        int, typer.Option(min=0, help="also show the newest N rows of reconciliation_log")
    ] = 0,
) -> None:
    """Reconcile the open sessions with their providers once (see also `up`, which does it
    every CHECKOUT_RECONCILE_INTERVAL_SECONDS)."""
    settings = load_settings()
    endpoints = endpoints_or_exit(settings)
    providers = configured_providers(settings)
    if not providers:
        console.print("no provider configured: nothing to reconcile")
        raise typer.Exit(1)

    async def main() -> tuple[ReconcileReport, list[dict[str, Any]]]:
        async with AsyncExitStack() as stack:
            for adapter in providers.values():
                stack.push_async_callback(adapter.aclose)
            read = await stack.enter_async_context(
                read_side(settings, endpoints, run_projector=False, serve_http=False)
            )
            client = None
            if not dry_run:
                client = await CheckoutClient.connect(
                    endpoints.nats_url, settings.layout(), options=nats_options(settings)
                )
                stack.push_async_callback(client.close)
            policy = reconcile_policy(settings)
            report = await reconciler(read, providers, client, policy).run_once(dry_run=dry_run)
            recent = await ReconciliationLog(read.pool).recent(history) if history else []
            return report, recent

    report, recent = run(main())
    console.print(_report_table(report))
    verb = "would settle" if dry_run else "settled"
    settled = sum(f.action.endswith(("complete", "expire")) for f in report.findings)
    console.print(f"{report.checked} session(s) checked; {verb} {settled}")
    if recent:
        console.print(_history_table(recent))


def _report_table(report: ReconcileReport) -> Table:
    table = Table(title=f"{report.run_id}{' (dry run)' if report.dry_run else ''}")
    for column in ("provider", "session", "provider session", "ours", "theirs", "action", "why"):
        table.add_column(column)
    for f in report.findings:
        table.add_row(
            f.provider,
            f.session_id or "",
            f.provider_session_id or "",
            f.ours or "",
            f.theirs or "",
            f.action,
            f.detail or "",
        )
    return table


def _history_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="reconciliation_log (newest first)")
    for column in ("at", "provider", "session", "ours", "theirs", "action", "dry run"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            f"{row['at']:%Y-%m-%d %H:%M:%S}",
            row["provider"],
            row["session_id"] or "",
            row["ours"] or "",
            row["theirs"] or "",
            row["action"],
            "yes" if row["dry_run"] else "",
        )
    return table
