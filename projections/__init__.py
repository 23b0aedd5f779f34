"""Projections of the checkout event stream into Postgres read models, and their queries.

Depends on `events` only (never on `orchestrator`): the composition root passes in the
NATS connection, the Postgres pool and DSN, and the stream's coordinates.

    migrate(dsn)                              schema migrations, each once, in order
    decode_stored(...) -> StoredEvent         a stored event as the read side folds it
    Projector(...).run()                      owned partitions -> read models, exactly once
    rebuild(name, ...)                        a new version beside the serving one, then switch
    status_report(...), wait_caught_up(...)   checkpoints, lag, owners, parked events
    ReadModels(pool, ..., watch=CommitWatch)  the queries, with read-your-writes and as_of
    create_app(reads)                         the same queries over HTTP (FastAPI)
    QueryClient(base_url)                     the same queries from Python (httpx)

The guarantees are written in each module's docstring and in docs/projections.md.
"""

from projections.api import MIN_SEQUENCE_HEADER, create_app
from projections.batch import BatchOutcome, apply_batch
from projections.checkpoints import Binding
from projections.client import QueryClient
from projections.decoding import StoredEvent, decode_stored
from projections.errors import (
    ConsistencyTimeout,
    InvalidQuery,
    MigrationError,
    ProjectionError,
    QueryError,
    QueryUnavailable,
    RebuildError,
    SessionNotFound,
)
from projections.fold import Core, Lifecycle, SessionState, Unapplicable, advance, apply, fold
from projections.migrate import migrate
from projections.ownership import owners
from projections.parked import ParkedEvent, ParkedEvents, ReplayOutcome, replay_parked
from projections.projector import Projector, ProjectorSettings
from projections.queries import ReadModels, SessionFilters
from projections.read_models import PROJECTION_NAMES, Projection, all_projections
from projections.rebuild import RebuildProgress, RebuildResult, rebuild
from projections.schemas import (
    CheckoutSession,
    ProviderStats,
    ProviderTotal,
    RoutingDecision,
    SessionPage,
    TimelineEvent,
)
from projections.source import EventSource, ReaderSettings, StreamMessage, read_all
from projections.status import StatusReport, caught_up, status_report, wait_caught_up
from projections.watch import CommitWatch

__all__ = [
    "MIN_SEQUENCE_HEADER",
    "PROJECTION_NAMES",
    "BatchOutcome",
    "Binding",
    "CheckoutSession",
    "CommitWatch",
    "ConsistencyTimeout",
    "Core",
    "EventSource",
    "InvalidQuery",
    "Lifecycle",
    "MigrationError",
    "ParkedEvent",
    "ParkedEvents",
    "Projection",
    "ProjectionError",
    "Projector",
    "ProjectorSettings",
    "ProviderStats",
    "ProviderTotal",
    "QueryClient",
    "QueryError",
    "QueryUnavailable",
    "ReadModels",
    "ReaderSettings",
    "RebuildError",
    "RebuildProgress",
    "RebuildResult",
    "ReplayOutcome",
    "RoutingDecision",
    "SessionFilters",
    "SessionNotFound",
    "SessionPage",
    "SessionState",
    "StatusReport",
    "StoredEvent",
    "StreamMessage",
    "TimelineEvent",
    "Unapplicable",
    "advance",
    "all_projections",
    "apply",
    "apply_batch",
    "caught_up",
    "create_app",
    "decode_stored",
    "fold",
    "live_bindings",
    "migrate",
    "owners",
    "read_all",
    "rebuild",
    "replay_parked",
    "status_report",
    "wait_caught_up",
]


def live_bindings() -> list[Binding]:
    """Every read model, each following its active version: what the live projector writes."""
    return [Binding(projection) for projection in all_projections()]
