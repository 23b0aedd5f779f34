"""``checkout-orchestrator api-keys ...``: create, revoke and list the HTTP API's keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from orchestrator.cli.common import console, with_pool
from orchestrator.http.api_keys import ApiKeys, Scope

__all__ = ["api_keys_app"]

api_keys_app = typer.Typer(
    help="API keys of the HTTP API: create, revoke, list.", no_args_is_help=True
)


@api_keys_app.command("create")
def create(
    scope: Annotated[Scope, typer.Option(help="read: queries only; write: also commands")],
    label: Annotated[str, typer.Option(help="who or what the key is for")] = "",
) -> None:
    """Create a key and print it; it is shown this once and stored only as a salted hash."""
    key = with_pool(lambda pool: ApiKeys(pool).create(scope, label))
    console.print(f"created {key.id} ({key.scope.value}); the key, shown only now:", style="dim")
    print(key.plaintext)  # noqa: T201 - plain stdout, so scripts can capture it


@api_keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (see `list`)")]) -> None:
    """Revoke a key; running servers stop accepting it within CHECKOUT_API_KEY_CACHE_SECONDS."""
    if not with_pool(lambda pool: ApiKeys(pool).revoke(key_id)):
        console.print(f"no live key {key_id}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")


@api_keys_app.command("list")
def list_keys() -> None:
    """The keys (ids, scopes, labels, dates; never a secret)."""
    table = Table(title="API keys")
    for column in ("id", "scope", "label", "created", "revoked"):
        table.add_column(column)
    for info in with_pool(lambda pool: ApiKeys(pool).list()):
        table.add_row(
            info.id,
            info.scope.value,
            info.label,
            info.created_at.isoformat(timespec="seconds"),
            info.revoked_at.isoformat(timespec="seconds") if info.revoked_at else "-",
        )
    console.print(table)
