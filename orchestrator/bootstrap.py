"""The composition root: the one place that builds servers, connections and services.

Everything else receives its dependencies as parameters, so tests build the same
graph with their own servers, stream names, clock and id generator.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from ulid import ULID

from orchestrator.command_service import register_command_service
from orchestrator.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from orchestrator.errors import StoreUnavailable
from orchestrator.event_store import EventStore
from orchestrator.handling import CommandHandler
from orchestrator.settings import Settings
from orchestrator.streams import StreamLayout, ensure_streams

__all__ = [
    "Endpoints",
    "Orchestrator",
    "connect_nats",
    "orchestrator",
    "read_endpoints",
    "servers",
    "utc_now",
]

RUNTIME_FILE = "runtime.json"


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_ulid() -> str:
    return str(ULID())


@dataclass(frozen=True, slots=True)
class Endpoints:
    nats_url: str
    database_url: str
    embedded_nats: bool
    embedded_postgres: bool


def _port(preferred: int) -> int:
    """The preferred port for an embedded server when it is free, else any free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


@contextmanager
def servers(settings: Settings) -> Iterator[Endpoints]:
    """The configured servers, or embedded ones in the data directory when unset."""
    with ExitStack() as stack:
        nats_url = settings.nats_url
        if nats_url is None:
            nats_server = EmbeddedNats(
                settings.data_dir / "nats",
                port=_port(settings.embedded_nats_port),
                sync_interval=settings.nats_sync_interval,
            )
            nats_url = stack.enter_context(nats_server).url
        database_url = settings.database_url
        if database_url is None:
            postgres = EmbeddedPostgres(
                settings.data_dir / "postgres", port=_port(settings.embedded_postgres_port)
            )
            database_url = stack.enter_context(postgres).dsn
        endpoints = Endpoints(
            nats_url, database_url, settings.nats_url is None, settings.database_url is None
        )
        runtime = settings.data_dir / RUNTIME_FILE
        runtime.write_text(json.dumps(asdict(endpoints)))
        stack.callback(runtime.unlink, missing_ok=True)
        yield endpoints


def read_endpoints(settings: Settings) -> Endpoints | None:
    """Endpoints of a running `up`, or the configured ones; None when neither."""
    runtime = Path(settings.data_dir) / RUNTIME_FILE
    if runtime.exists():
        found = Endpoints(**json.loads(runtime.read_text()))
        return Endpoints(
            settings.nats_url or found.nats_url,
            settings.database_url or found.database_url,
            found.embedded_nats,
            found.embedded_postgres,
        )
    if settings.nats_url and settings.database_url:
        return Endpoints(
            settings.nats_url,
            settings.database_url,
            embedded_nats=False,
            embedded_postgres=False,
        )
    return None


async def connect_nats(url: str, name: str) -> NatsClient:
    try:
        return await nats.connect(url, name=name, connect_timeout=5, max_reconnect_attempts=-1)
    except (OSError, nats.errors.Error) as exc:
        raise StoreUnavailable(f"cannot connect to NATS at {url}: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Orchestrator:
    nc: NatsClient
    store: EventStore
    broker: NatsBroker
    layout: StreamLayout


@asynccontextmanager
async def orchestrator(
    settings: Settings,
    nats_url: str,
    *,
    clock: Callable[[], datetime] = utc_now,
    new_id: Callable[[], str] = new_ulid,
) -> AsyncIterator[Orchestrator]:
    """Streams checked, event store open, command handlers consuming."""
    layout = settings.layout()
    async with AsyncExitStack() as stack:
        nc = await connect_nats(nats_url, "checkout-orchestrator")
        stack.push_async_callback(nc.drain)
        await ensure_streams(nc, layout)
        store = EventStore(nc, layout, timeout=settings.store_timeout_seconds)
        stack.push_async_callback(store.close)
        broker = NatsBroker(
            nats_url,
            name="checkout-orchestrator-commands",
            logger=logging.getLogger("orchestrator.broker"),
        )
        register_command_service(broker, layout, CommandHandler(store, new_event_id=new_id), clock)
        await broker.start()
        stack.push_async_callback(broker.stop)
        yield Orchestrator(nc, store, broker, layout)
