"""``checkout-orchestrator api-keys ...``: create, revoke and list the HTTP API's keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from orchestrator.api_keys import ApiKeys, Scope
from orchestrator.bootstrap import read_endpoints
from orchestrator.settings import Settings
from projections import migrate

__all__ = ["api_keys_app"]

api_keys_app = typer.Typer(
    help="API keys of the HTTP API: create, revoke, list.", no_args_is_help=True
)
console = Console()
T = TypeVar("T")


def _with_keys(use: Callable[[ApiKeys], Awaitable[T]]) -> T:
    endpoints = read_endpoints(Settings())
    if endpoints is None:
        console.print("no servers: start them with `checkout-orchestrator up`")
        raise typer.Exit(1)

    async def run() -> T:
        await migrate(endpoints.database_url, also=("orchestrator",))
        pool = await asyncpg.create_pool(endpoints.database_url, min_size=1, max_size=2)
        try:
            return await use(ApiKeys(pool))
        finally:
            await pool.close()

    return asyncio.run(run())


@api_keys_app.command("create")
def create(
    scope: Annotated[Scope, typer.Option(help="read: queries only; write: also commands")],
    label: Annotated[str, typer.Option(help="who or what the key is for")] = "",
) -> None:
    """Create a key and print it; it is shown this once and stored only as a salted hash."""
    key = _with_keys(lambda keys: keys.create(scope, label))
    console.print(f"created {key.id} ({key.scope.value}); the key, shown only now:", style="dim")
    print(key.plaintext)  # noqa: T201 - plain stdout, so scripts can capture it


@api_keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (see `list`)")]) -> None:
    """Revoke a key; running servers stop accepting it within CHECKOUT_API_KEY_CACHE_SECONDS."""
    if not _with_keys(lambda keys: keys.revoke(key_id)):
        console.print(f"no live key {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@api_keys_app.command("list")
def list_keys() -> None:
    """The keys (ids, scopes, labels, dates; never a secret)."""
    table = Table(title="API keys")
    for column in ("id", "scope", "label", "created", "revoked"):
        table.add_column(column)
    for info in _with_keys(lambda keys: keys.list()):
        table.add_row(
            info.id,
            info.scope.value,
            info.label,
            info.created_at.isoformat(timespec="seconds"),
            info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "-",
        )
    console.print(table)
