"""What every command of the CLI shares: the console, settings, the servers, one pool helper."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import typer
from rich.console import Console

from orchestrator.bootstrap import Endpoints, open_pool, read_endpoints
from orchestrator.errors import CheckoutError
from orchestrator.settings import Settings
from projections import migrate

__all__ = [
    "console",
    "endpoints_or_exit",
    "load_settings",
    "redact",
    "run",
    "until_signalled",
    "with_pool",
]

console = Console()
T = TypeVar("T")


def load_settings() -> Settings:
    loaded = Settings()
    loaded.data_dir.mkdir(parents=True, exist_ok=True)
    return loaded


def endpoints_or_exit(loaded: Settings) -> Endpoints:
    """The running servers (from `up`'s runtime file or NATS_URL / DATABASE_URL), or exit 1."""
    endpoints = read_endpoints(loaded)
    if endpoints is None:
        console.print(
            "no servers: start them with `checkout-orchestrator up`, "
            "or set NATS_URL and DATABASE_URL"
        )
        raise typer.Exit(1)
    return endpoints


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main``; an error of ours is printed with its code and exits 2 (no traceback)."""
    try:
        return asyncio.run(main)
    except CheckoutError as exc:
        console.print(f"[red]{exc.code}[/red]: {exc.message}")
        raise typer.Exit(2) from None


def with_pool(use: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Migrate the database of the running servers, then ``use`` a pool on it."""
    loaded = load_settings()
    endpoints = endpoints_or_exit(loaded)

    async def main() -> T:
        await migrate(endpoints.database_url, also=("orchestrator",))
        pool = await open_pool(endpoints.database_url, loaded)
        try:
            return await use(pool)
        finally:
            await pool.close()

    return run(main())


async def until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def redact(dsn: str) -> str:
    """A DSN without its password, for printing."""
    scheme, sep, rest = dsn.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return dsn
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"
