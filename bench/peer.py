"""The peer of `python -m bench run`: our session workload through ``eventsourcing``.

The same workload as ours, written and projected with the ``eventsourcing`` library (9.5.x,
its PostgreSQL persistence module, psycopg 3), used the way its documentation shows:

* Writing (:func:`write_sessions`): a :class:`CheckoutSession` aggregate (declarative
  ``@event`` methods, three events: ``Requested``, ``Routed``, ``Opened``, with payloads the
  size of ours) saved with ``Application.save``, one save per session: one transaction
  inserting its three events, the primary key ``(originator_id, originator_version)`` being
  the optimistic-concurrency check. The library's default JSON transcoder, no compression,
  no cipher, no snapshots. ``writers`` threads share one application (and its connection
  pool, sized to the threads). The recorder serialises writers with an ``EXCLUSIVE`` table
  lock per transaction, so that notification ids are issued in commit order: that is the
  library's price for a gap-free log, as ours is the stream's sequence.
* Projecting (:func:`project_sessions`): the library's ``ProjectionRunner`` (a subscription
  to the application's log, LISTEN/NOTIFY plus pages of 500 notifications, and one processing
  thread) feeding a ``Projection`` whose view is a ``PostgresTrackingRecorder`` subclass: each
  event upserts the session's read-model row and records the tracking position in the same
  transaction, which is how the library makes the projection exactly-once (the pattern of
  its docs' ``PostgresEventCounters`` example).

The functions are synchronous (the library is); callers use ``asyncio.to_thread`` or a
process of their own. Each wants an empty database: the tables are created on first use.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresFactory, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from psycopg.sql import SQL, Identifier

__all__ = [
    "EVENTS_PER_SESSION",
    "CheckoutSession",
    "PeerCheckout",
    "PeerFigure",
    "SessionsProjection",
    "SessionsView",
    "peer_env",
    "project_sessions",
    "write_sessions",
]

EVENTS_PER_SESSION = 3
READ_MODEL_TABLE = "peer_checkout_sessions"
PROJECTION_POOL_SIZE = 2  # the runner's subscription (LISTEN + pulls) and the view's writes
POLL_SECONDS = 0.005
DEFAULT_TIMEOUT_SECONDS = 900.0
PROVIDERS = ("stripe", "polar", "lomi", "kong")


@dataclass(frozen=True, slots=True)
class PeerFigure:
    """How many events the peer handled, and the wall time it took."""

    events: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


# --- the domain model, in the library's style ------------------------------------------------


class CheckoutSession(Aggregate):
    """A checkout session: requested, routed to a provider, opened there."""

    class Requested(Aggregate.Created):
        amount: int  # minor units
        currency: str
        customer_email: str

    class Routed(Aggregate.Event):
        provider: str

    class Opened(Aggregate.Event):
        provider: str
        provider_session_id: str
        url: str

    @event(Requested)
    def __init__(self, amount: int, currency: str, customer_email: str) -> None:
        self.status = "requested"
        self.amount = amount
        self.currency = currency
        self.customer_email = customer_email
        self.provider: str | None = None
        self.provider_session_id: str | None = None
        self.url: str | None = None

    @event(Routed)
    def route(self, provider: str) -> None:
        self.status = "routed"
        self.provider = provider

    @event(Opened)
    def open(self, provider: str, provider_session_id: str, url: str) -> None:
        self.status = "open"
        self.provider = provider
        self.provider_session_id = provider_session_id
        self.url = url


class PeerCheckout(Application[UUID]):
    """The write side; its events table is ``peercheckout_events``."""

    name = "PeerCheckout"


def _open_session(index: int) -> CheckoutSession:
    """One session's three events, as our command path produces them for a hosted checkout."""
    provider = PROVIDERS[index % len(PROVIDERS)]
    session = CheckoutSession(
        amount=1_000 + index % 50_000,
        currency="EUR",
        customer_email=f"customer{index}@example.com",
    )
    session.route(provider)
    provider_session_id = f"cs_test_{session.id.hex}"
    session.open(
        provider=provider,
        provider_session_id=provider_session_id,
        url=f"https://checkout.{provider}.example/pay/{provider_session_id}",
    )
    return session


# --- configuration ------------------------------------------------------------------------------


def peer_env(dsn: str, *, pool_size: int) -> dict[str, str]:
    """The library's environment-style settings for the Postgres behind ``dsn``."""
    parts = urlsplit(dsn)
    if parts.scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"not a postgres URL: {parts.scheme}://…")
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname or parts.hostname is None:
        raise ValueError("the postgres URL needs a host and a database name")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONNECT_TIMEOUT": "30",
        # defaults, stated so that a stray variable in the caller's environment cannot
        # change what is measured: JSON transcoder, no compression, no encryption, no
        # snapshots, the insert done by statements (not the optional server-side function)
        "COMPRESSOR_TOPIC": "",
        "CIPHER_TOPIC": "",
        "CIPHER_KEY": "",
        "IS_SNAPSHOTTING_ENABLED": "no",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "no",
        "CREATE_TABLE": "yes",
    }


# --- writing ------------------------------------------------------------------------------------


def write_sessions(dsn: str, sessions: int, *, writers: int = 8) -> PeerFigure:
    """Write ``sessions`` sessions of three events, one ``Application.save`` each, from
    ``writers`` threads; return the events written and the wall time (tables made before).
    """
    if sessions < 0 or writers < 1:
        raise ValueError("sessions must be >= 0 and writers >= 1")
    app = PeerCheckout(env=peer_env(dsn, pool_size=writers))
    try:
        if isinstance(app.factory, PostgresFactory):  # connections open before the clock starts
            app.factory.datastore.pool.wait(timeout=30)
        shares = [range(w, sessions, writers) for w in range(writers)]

        def write(share: range) -> int:
            written = 0
            for index in share:
                app.save(_open_session(index))
                written += EVENTS_PER_SESSION
            return written

        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="peer-writer") as pool:
            started = time.perf_counter()
            counts = list(pool.map(write, shares))
            seconds = time.perf_counter() - started
    finally:
        app.close()
    return PeerFigure(events=sum(counts), seconds=seconds)


# --- projecting ---------------------------------------------------------------------------------


class SessionsView(PostgresTrackingRecorder):
    """A read model of one row per session, written with its tracking position."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.check_identifier_length(READ_MODEL_TABLE)
        table = Identifier(self.datastore.schema, READ_MODEL_TABLE)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {0} ("
                "id uuid PRIMARY KEY, "
                "status text NOT NULL, "
                "provider text, "
                "amount bigint NOT NULL, "
                "currency text NOT NULL, "
                "position bigint NOT NULL)"
            ).format(table)
        )
        self._requested = SQL(
            "INSERT INTO {0} (id, status, amount, currency, position) "
            "VALUES (%s, 'requested', %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, "
            "amount = EXCLUDED.amount, currency = EXCLUDED.currency, "
            "position = EXCLUDED.position"
        ).format(table)
        self._provider_status = SQL(
            "UPDATE {0} SET status = %s, provider = %s, position = %s WHERE id = %s"
        ).format(table)
        self._count = SQL("SELECT count(*) AS n FROM {0}").format(table)

    @contextmanager
    def _tracked(self, tracking: Tracking) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as curs:
            self._insert_tracking(curs, tracking)
            yield curs

    def session_requested(
        self, session_id: UUID, amount: int, currency: str, tracking: Tracking
    ) -> None:
        with self._tracked(tracking) as curs:
            curs.execute(
                self._requested,
                (session_id, amount, currency, tracking.notification_id),
                prepare=True,
            )

    def session_moved(
        self, session_id: UUID, status: str, provider: str, tracking: Tracking
    ) -> None:
        with self._tracked(tracking) as curs:
            curs.execute(
                self._provider_status,
                (status, provider, tracking.notification_id, session_id),
                prepare=True,
            )
            if curs.rowcount != 1:
                raise LookupError(f"no read-model row for session {session_id}")

    def count_sessions(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._count)
            row = curs.fetchone()
        return int(row["n"]) if row else 0


class SessionsProjection(Projection[SessionsView]):
    """Maps each session event to its read-model write, and counts the events done."""

    name = "PeerSessions"

    def __init__(self, view: SessionsView) -> None:
        super().__init__(view)
        self.processed = 0  # written by the runner's one processing thread only

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.insert_tracking(tracking)  # not ours to project: just move past it
        self.processed += 1
        del domain_event

    @process_event.register
    def _requested(self, domain_event: CheckoutSession.Requested, tracking: Tracking) -> None:
        self.view.session_requested(
            domain_event.originator_id, domain_event.amount, domain_event.currency, tracking
        )
        self.processed += 1

    @process_event.register
    def _routed(self, domain_event: CheckoutSession.Routed, tracking: Tracking) -> None:
        self.view.session_moved(
            domain_event.originator_id, "routed", domain_event.provider, tracking
        )
        self.processed += 1

    @process_event.register
    def _opened(self, domain_event: CheckoutSession.Opened, tracking: Tracking) -> None:
        self.view.session_moved(domain_event.originator_id, "open", domain_event.provider, tracking)
        self.processed += 1


def project_sessions(
    dsn: str, *, expected_events: int, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> PeerFigure:
    """Catch up from the start of the log into the read model; return the events projected
    and the wall time from starting the runner until ``expected_events`` were committed.
    """
    if expected_events < 0:
        raise ValueError("expected_events must be >= 0")
    env = peer_env(dsn, pool_size=PROJECTION_POOL_SIZE)
    started = time.perf_counter()
    runner = ProjectionRunner(
        application_class=PeerCheckout,
        projection_class=SessionsProjection,
        view_class=SessionsView,
        env=env,
    )
    try:
        with runner:
            projection = runner.projection
            if not isinstance(projection, SessionsProjection):  # pragma: no cover
                raise TypeError(type(projection))
            deadline = started + timeout
            while projection.processed < expected_events:
                if runner.is_interrupted.is_set():
                    runner.run_forever(timeout=0)  # re-raises the processing thread's error
                    raise RuntimeError("the projection runner stopped early")
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"projected {projection.processed} of {expected_events} events "
                        f"in {timeout:.0f}s"
                    )
                time.sleep(POLL_SECONDS)
            seconds = time.perf_counter() - started
            processed = projection.processed
    finally:
        runner.view.datastore.close()
    return PeerFigure(events=processed, seconds=seconds)
