"""The read side's errors: the `projections` subtree of the one error tree.

The root, `CheckoutError`, and `SessionNotFound` are `events.errors`' (shared with the write
side) and re-exported here. Each error has a stable ``code`` and an HTTP ``status``:

    CheckoutError (events.errors)
    ├── SessionNotFound                session_not_found      404  no such session (at that instant)
    └── ProjectionError                projection_error       500
        ├── QueryError                 internal_error         500  (base of the query errors)
        │   ├── InvalidQuery           invalid_query          400  bad filter, cursor or instant
        │   ├── ConsistencyTimeout     consistency_timeout    504  min_sequence not reached in time
        │   └── QueryUnavailable       query_unavailable      503  the query service or its
        │                                                          database did not answer
        ├── MigrationError             migration_failed       500  nothing of it stays
        ├── RebuildError               rebuild_failed         500  unknown projection, or it failed
        └── Unapplicable               unapplicable_event     500  cannot follow the state: parked

The HTTP API renders any `CheckoutError` as ``{"code", "message", ...details}`` with its
status; `projections.client.QueryClient` turns such a body back into the same class. asyncpg,
nats-py and httpx exceptions are translated into these once, at the boundary that meets them.
"""

from __future__ import annotations

from typing import Any

from events.errors import CheckoutError, SessionNotFound

__all__ = [
    "CheckoutError",
    "ConsistencyTimeout",
    "InvalidQuery",
    "MigrationError",
    "ProjectionError",
    "QueryError",
    "QueryUnavailable",
    "RebuildError",
    "SessionNotFound",
    "query_error",
]


class ProjectionError(CheckoutError):
    """Base of every error the projections raise on purpose."""

    code = "projection_error"


class QueryError(ProjectionError):
    code = "internal_error"


class InvalidQuery(QueryError):
    code = "invalid_query"
    status = 400


class ConsistencyTimeout(QueryError):
    code = "consistency_timeout"
    status = 504


class QueryUnavailable(QueryError):
    code = "query_unavailable"
    status = 503


class MigrationError(ProjectionError):
    code = "migration_failed"


class RebuildError(ProjectionError):
    code = "rebuild_failed"


_BY_CODE: dict[str, type[QueryError]] = {
    cls.code: cls for cls in (InvalidQuery, ConsistencyTimeout, QueryUnavailable)
}


def query_error(status: int, body: dict[str, Any]) -> CheckoutError:
    """The typed error an HTTP error body stands for (used by the client)."""
    code = str(body.get("code", ""))
    message = str(body.get("message", f"HTTP {status}"))
    details = {k: v for k, v in body.items() if k not in {"code", "message"}}
    if code == SessionNotFound.code:
        return SessionNotFound(str(details.get("session_id", "")), message)
    cls = _BY_CODE.get(code, QueryError)
    return cls(message, **details)
