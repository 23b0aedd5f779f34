"""The projections' one error tree. Query errors carry a stable ``code`` and an HTTP status.

    ProjectionError
    ├── QueryError                 internal_error         (base; status 500)
    │   ├── InvalidQuery           invalid_query          400  bad filter, cursor or instant
    │   ├── SessionNotFound        session_not_found      404  no such session (at that instant)
    │   ├── ConsistencyTimeout     consistency_timeout    504  min_sequence not reached in time
    │   └── QueryUnavailable       query_unavailable      503  the query service did not answer,
    │                                                              or its database is unavailable
    ├── MigrationError                                    a migration failed; nothing of it stays
    └── RebuildError                                      unknown projection, or a rebuild failed

The HTTP API renders a `QueryError` as ``{"code", "message", ...details}`` with its status;
`projections.client.QueryClient` turns such a body back into the same class. asyncpg,
nats-py and httpx exceptions are translated into these once, at the boundary that meets them.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
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


class ProjectionError(Exception):
    """Base of every error the projections raise on purpose."""


class QueryError(ProjectionError):
    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class InvalidQuery(QueryError):
    code = "invalid_query"
    status = 400


class SessionNotFound(QueryError):
    code = "session_not_found"
    status = 404

    def __init__(self, session_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no checkout session {session_id}", session_id=session_id)
        self.session_id = session_id


class ConsistencyTimeout(QueryError):
    code = "consistency_timeout"
    status = 504


class QueryUnavailable(QueryError):
    code = "query_unavailable"
    status = 503


class MigrationError(ProjectionError):
    pass


class RebuildError(ProjectionError):
    pass


_BY_CODE: dict[str, type[QueryError]] = {
    cls.code: cls for cls in (InvalidQuery, ConsistencyTimeout, QueryUnavailable)
}


def query_error(status: int, body: dict[str, Any]) -> QueryError:
    """The typed error an HTTP error body stands for (used by the client)."""
    code = str(body.get("code", ""))
    message = str(body.get("message", f"HTTP {status}"))
    details = {k: v for k, v in body.items() if k not in {"code", "message"}}
    if code == SessionNotFound.code:
        return SessionNotFound(str(details.get("session_id", "")), message)
    cls = _BY_CODE.get(code, QueryError)
    return cls(message, **details)
