"""The composition root: the one place that builds servers, connections and services.

Everything else receives its dependencies as parameters, so tests build the same
graph with their own servers, stream names, clock and id generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from ulid import ULID

from events.values import Provider
from orchestrator.client import CheckoutClient, nats_servers
from orchestrator.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from orchestrator.errors import StoreUnavailable
from orchestrator.http.api import add_command_routes, add_webhook_routes
from orchestrator.http.api_keys import ApiKeys
from orchestrator.http.auth import ApiKeyAuth
from orchestrator.http.console import ConsoleAuth, ConsoleDeps, ConsoleSessions, add_console
from orchestrator.jetstream.command_service import CommandWorker, upgrade_consumer
from orchestrator.jetstream.connection import (
    ANONYMOUS,
    NatsOptions,
    NatsRefused,
    nats_options,
    redact_url,
)
from orchestrator.jetstream.connection import connect as nats_connect
from orchestrator.jetstream.event_store import EventStore
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.privacy.forgetting import Forgetter
from orchestrator.privacy.keyring import (
    KEK_FILE_SETTING,
    KEK_SETTING,
    KeyEncryptionKey,
    KeyEncryptionKeyError,
    Keyring,
    generate_kek_file,
)
from orchestrator.privacy.sealing import Opener, Sealer
from orchestrator.privacy.service import serve_forget
from orchestrator.providers.base import PaymentProvider
from orchestrator.routing.health import BreakerPolicy, HealthBoard
from orchestrator.routing.rules import load_rules
from orchestrator.services.closing import ProviderCloser
from orchestrator.services.create_flow import CreateFlow
from orchestrator.services.handling import CommandHandler
from orchestrator.services.reconciliation import ReconcilePolicy, Reconciler, ReconciliationLog
from orchestrator.services.settlement import Settler
from orchestrator.settings import Settings
from orchestrator.telemetry import Telemetry, build_telemetry
from orchestrator.webhooks.inbox import WebhookInbox
from orchestrator.webhooks.processor import WebhookProcessor
from projections import (
    BatchOutcome,
    CommitWatch,
    EventSource,
    ParkedEvents,
    Projector,
    ProjectorSettings,
    ReadModels,
    create_app,
    live_bindings,
    migrate,
)

__all__ = [
    "Endpoints",
    "Gateway",
    "Orchestrator",
    "Privacy",
    "ReadSide",
    "connect_nats",
    "event_source",
    "gateway",
    "health_board",
    "key_encryption_key",
    "open_pool",
    "orchestrator",
    "privacy",
    "projector_settings",
    "read_endpoints",
    "read_side",
    "reconcile_policy",
    "reconciler",
    "servers",
    "telemetry_for",
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
    if preferred == 0:
        return free_port()
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


async def connect_nats(url: str, name: str, options: NatsOptions = ANONYMOUS) -> NatsClient:
    """A connection with the credentials and TLS of ``options`` (``nats_options(settings)``).

    Waits for servers that are not up yet; :class:`NatsRefused` at once when one refuses us.
    """
    try:
        return await nats_connect(
            nats_servers(url), name=name, options=options, max_reconnect_attempts=-1
        )
    except NatsRefused:
        raise
    except (OSError, nats.errors.Error) as exc:
        raise StoreUnavailable(f"cannot connect to NATS at {redact_url(url)}: {exc!r}") from exc


# --- personal data: the key store, sealing and opening (docs/privacy.md) ---------------------


def key_encryption_key(settings: Settings, endpoints: Endpoints) -> KeyEncryptionKey:
    """The KEK from the settings; generated in the data directory for the embedded
    Postgres when none is set; `KeyEncryptionKeyError` (naming the setting) otherwise."""
    if settings.privacy_kek is not None:
        return KeyEncryptionKey.parse(settings.privacy_kek.get_secret_value(), KEK_SETTING)
    if settings.privacy_kek_file is not None:
        return KeyEncryptionKey.from_file(settings.privacy_kek_file)
    if endpoints.embedded_postgres:
        return generate_kek_file(settings.generated_kek_file)
    raise KeyEncryptionKeyError(
        f"{KEK_FILE_SETTING} (or {KEK_SETTING}) must be set: customers' personal data is "
        "sealed under keys it wraps (docs/privacy.md)"
    )


@dataclass(frozen=True, slots=True)
class Privacy:
    keyring: Keyring
    sealer: Sealer
    opener: Opener
    personal_metadata_keys: tuple[str, ...]


@asynccontextmanager
async def privacy(settings: Settings, endpoints: Endpoints) -> AsyncIterator[Privacy]:
    """The key store, checked against the KEK (a wrong one refuses to start), on a
    migrated database."""
    kek = key_encryption_key(settings, endpoints)
    await migrate(endpoints.database_url, also=("orchestrator",))
    pool = await open_pool(endpoints.database_url, settings)
    try:
        keyring = Keyring(pool, kek)
        await keyring.start()
        keys = settings.personal_metadata_keys
        yield Privacy(keyring, Sealer(keyring, keys), Opener(keyring), keys)
    finally:
        await pool.close()


@dataclass(frozen=True, slots=True)
class Orchestrator:
    nc: NatsClient
    store: EventStore
    commands: CommandWorker
    layout: StreamLayout
    health: HealthBoard | None = None
    """the providers' circuits (None without providers); the console shows them"""


def health_board(settings: Settings) -> HealthBoard:
    return HealthBoard(
        time.monotonic,
        BreakerPolicy(
            consecutive_failures=settings.breaker_consecutive_failures,
            cool_down_seconds=settings.breaker_cool_down_seconds,
        ),
    )


def create_flow(
    settings: Settings,
    store: EventStore,
    providers: Mapping[Provider, PaymentProvider],
    *,
    clock: Callable[[], datetime],
    new_id: Callable[[], str],
    telemetry: Telemetry,
    health: HealthBoard | None = None,
) -> CreateFlow:
    return CreateFlow(
        store,
        providers,
        load_rules(settings.routing_rules_path),
        health or health_board(settings),
        clock=clock,
        new_event_id=new_id,
        telemetry=telemetry,
    )


def telemetry_for(settings: Settings) -> Telemetry:
    return build_telemetry(
        service_name=settings.otel_service_name, otlp_endpoint=settings.otel_exporter_otlp_endpoint
    )


@asynccontextmanager
async def orchestrator(
    settings: Settings,
    nats_url: str,
    *,
    providers: Mapping[Provider, PaymentProvider] | None = None,
    telemetry: Telemetry | None = None,
    clock: Callable[[], datetime] = utc_now,
    new_id: Callable[[], str] = new_ulid,
    personal: Privacy | None = None,
) -> AsyncIterator[Orchestrator]:
    """Streams checked, event store open, command handlers consuming.

    With ``providers``, a create command is routed and opened at a provider; without,
    it only records the request (no provider configured). With ``personal`` (every
    process `up` starts has it), customers' personal data is sealed on append and
    ``forget_customer`` is answered.
    """
    layout = settings.layout()
    telemetry = telemetry or Telemetry.disabled()
    options = nats_options(settings)
    async with AsyncExitStack() as stack:
        nc = await connect_nats(nats_url, "checkout-orchestrator", options)
        stack.push_async_callback(nc.drain)
        await ensure_streams(nc, layout)
        store = EventStore(
            nc,
            layout,
            timeout=settings.store_timeout_seconds,
            tracer_provider=telemetry.tracer_provider,
            sealer=personal.sealer if personal else None,
        )
        stack.push_async_callback(store.close)
        if personal is not None:
            forgetter = Forgetter(
                personal.keyring,
                store,
                clock=clock,
                new_id=new_id,
                personal_metadata_keys=personal.personal_metadata_keys,
                sealer=personal.sealer,
            )
            forget_sub = await serve_forget(nc, layout, forgetter)
            stack.push_async_callback(forget_sub.unsubscribe)
        health = health_board(settings) if providers else None
        flow = (
            create_flow(
                settings, store, providers, clock=clock, new_id=new_id, telemetry=telemetry,
                health=health,
            )
            if providers
            else None
        )  # fmt: skip
        closer = ProviderCloser(providers) if providers else None
        handler = CommandHandler(
            store, new_event_id=new_id, create_flow=flow, closer=closer, telemetry=telemetry
        )
        await upgrade_consumer(nc, layout)
        worker = CommandWorker(nc, layout, handler, clock, in_flight=settings.commands_in_flight)
        await worker.start()
        stack.push_async_callback(worker.stop)
        yield Orchestrator(nc, store, worker, layout, health)


# --- projections: read models, projectors, query API ----------------------------------------
# The read side depends on `projections`' public API only; it gets its own NATS connection
# and pool so it can run in a process of its own (`checkout-orchestrator projections run`).


def event_source(settings: Settings) -> EventSource:
    return EventSource(settings.events_stream, settings.events_prefix, settings.partitions)


def projector_settings(settings: Settings, *, name: str | None = None) -> ProjectorSettings:
    return ProjectorSettings(
        name=name or settings.projector_name,
        batch_size=settings.projector_batch_size,
        batch_linger=settings.projector_batch_linger_seconds,
        appliers=settings.projector_appliers,
        claim_interval=settings.projector_claim_interval,
    )


async def open_pool(dsn: str, settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=1, max_size=settings.projector_pool_size)


@dataclass(frozen=True, slots=True)
class ReadSide:
    nc: NatsClient
    pool: asyncpg.Pool
    reads: ReadModels
    projector: Projector | None
    http_url: str | None
    personal: Privacy | None = None


def _count_parked(telemetry: Telemetry) -> Callable[[BatchOutcome, float], None]:
    """The alarm's metric: ``checkout.projection.parked``, events parked by the projector
    (``projections status`` and ``GET /v1/operator/parked-events`` show which)."""
    parked = telemetry.meter_provider.get_meter("projections").create_counter(
        "checkout.projection.parked",
        unit="{event}",
        description="events a projection could not apply and parked",
    )

    def observe(outcome: BatchOutcome, _: float) -> None:
        if outcome.parked:
            parked.add(outcome.parked)

    return observe


@asynccontextmanager
async def read_side(
    settings: Settings,
    endpoints: Endpoints,
    *,
    run_projector: bool = True,
    serve_http: bool = True,
    telemetry: Telemetry | None = None,
    personal: Privacy | None = None,
) -> AsyncIterator[ReadSide]:
    """Migrated database, the projector running and the query API served, until exit."""
    from orchestrator.http.server import HttpServer  # noqa: PLC0415 - only when serving

    await migrate(endpoints.database_url, also=("orchestrator",))
    async with AsyncExitStack() as stack:
        nc = await connect_nats(endpoints.nats_url, "checkout-projections", nats_options(settings))
        stack.push_async_callback(nc.drain)
        await ensure_streams(nc, settings.layout())
        pool = await open_pool(endpoints.database_url, settings)
        stack.push_async_callback(pool.close)
        watch = CommitWatch(endpoints.database_url)
        await watch.start()
        stack.push_async_callback(watch.close)
        reads = ReadModels(
            pool,
            partitions=settings.partitions,
            wait_timeout=settings.read_wait_timeout_seconds,
            watch=watch,
        )
        projector = None
        if run_projector:
            if personal is None:  # the projector opens sealed personal data
                personal = await stack.enter_async_context(privacy(settings, endpoints))
            projector = Projector(
                nc=nc,
                pool=pool,
                dsn=endpoints.database_url,
                source=event_source(settings),
                bindings=live_bindings(),
                settings=projector_settings(settings),
                tracer=(telemetry or Telemetry.disabled()).tracer("projections"),
                on_commit=_count_parked(telemetry or Telemetry.disabled()),
                personal=personal.opener if personal else None,
            )
            task = asyncio.create_task(projector.run(), name="projector")
            stack.push_async_callback(_cancelled, task)
        http_url = None
        if serve_http:
            app = create_app(reads, parked=ParkedEvents(pool))
            server = HttpServer(app, host=settings.http_host, port=settings.http_port)
            await stack.enter_async_context(server)
            http_url = server.base_url
        yield ReadSide(nc, pool, reads, projector, http_url, personal)


# --- the gateway: HTTP commands, webhooks and queries; the webhook worker; settlement ---


@dataclass(frozen=True, slots=True)
class Gateway:
    http_url: str
    client: CheckoutClient
    inbox: WebhookInbox
    processor: WebhookProcessor
    settler: Settler


@asynccontextmanager
async def gateway(
    settings: Settings,
    endpoints: Endpoints,
    read: ReadSide,
    providers: Mapping[Provider, PaymentProvider],
    *,
    telemetry: Telemetry | None = None,
    clock: Callable[[], datetime] = utc_now,
    health: HealthBoard | None = None,
) -> AsyncIterator[Gateway]:
    """One HTTP app (queries, commands, webhooks, the console), the inbox worker and the
    settler. ``health``: the circuits of this process's orchestrator, for the console."""
    from orchestrator.http.server import HttpServer  # noqa: PLC0415 - only when serving

    async with AsyncExitStack() as stack:
        client = await CheckoutClient.connect(
            endpoints.nats_url, settings.layout(), options=nats_options(settings)
        )
        stack.push_async_callback(client.close)
        inbox = WebhookInbox(read.pool)
        processor = WebhookProcessor(read.pool, inbox, providers, client, read.reads)
        policy = reconcile_policy(settings)
        settler = Settler(
            read.reads,
            client,
            clock,
            reconciler(read, providers, client, policy, clock=clock),
            reconcile_every=policy.interval,
        )
        keys = (
            ApiKeys(read.pool, cache_seconds=settings.api_key_cache_seconds)
            if settings.api_auth == "required"
            else None
        )
        auth = ApiKeyAuth(keys)
        app = create_app(
            read.reads,
            parked=ParkedEvents(read.pool),
            dependencies=auth.read,
            responses=auth.responses,
        )
        auth.install(app)
        if telemetry is not None:
            FastAPIInstrumentor.instrument_app(
                app,
                tracer_provider=telemetry.tracer_provider,
                meter_provider=telemetry.meter_provider,
            )
        add_command_routes(app, client, auth)
        add_webhook_routes(app, providers, inbox, clock=clock, on_stored=processor.wake)
        add_console(
            app,
            ConsoleDeps(
                auth=ConsoleAuth(keys, ConsoleSessions()),
                reads=read.reads,
                pool=read.pool,
                nc=read.nc,
                source=event_source(settings),
                providers=tuple(providers),
                health=health,
                wake_webhooks=processor.wake,
                trace_url_template=settings.trace_url_template,
            ),
        )
        server = HttpServer(app, host=settings.http_host, port=settings.http_port)
        await stack.enter_async_context(server)
        stop = asyncio.Event()
        for name, job in (
            ("webhooks", processor.run(stop, idle=settings.webhook_worker_interval_seconds)),
            ("settlement", settler.run(stop, interval=settings.settlement_interval_seconds)),
        ):
            stack.push_async_callback(_finished, asyncio.create_task(job, name=name))
        stack.callback(stop.set)  # runs first: the jobs end their round, then are cancelled
        yield Gateway(server.base_url, client, inbox, processor, settler)


def reconcile_policy(settings: Settings) -> ReconcilePolicy:
    return ReconcilePolicy(
        interval=settings.reconcile_interval_seconds,
        quiet=timedelta(seconds=settings.reconcile_quiet_seconds),
        rate_per_second=settings.reconcile_rate_per_second,
        backoff_max=settings.reconcile_backoff_max_seconds,
    )


def reconciler(
    read: ReadSide,
    providers: Mapping[Provider, PaymentProvider],
    client: CheckoutClient | None,
    policy: ReconcilePolicy,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> Reconciler:
    """Reconciliation over ``read``'s pool; without a client it can only dry-run."""
    return Reconciler(
        read.reads,
        providers,
        client,
        clock,
        policy,
        log=ReconciliationLog(read.pool),
        inbox=WebhookInbox(read.pool),
    )


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _finished(task: asyncio.Task[None], grace: float = 5.0) -> None:
    """A job asked to stop (its ``stop`` event is set) finishes the round it is in, then
    is cancelled if it has not: a provider call cancelled mid-flight can leave its socket
    for the garbage collector to close."""
    await asyncio.wait({task}, timeout=grace)
    await _cancelled(task)
