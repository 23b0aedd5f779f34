"""`QueryClient`: the read-model queries from Python, over the HTTP API (httpx).

    async with QueryClient("http://127.0.0.1:8080") as reads:
        session = await reads.session(session_id, min_sequence=reply.sequence)
        async for s in reads.iter_sessions(status="complete", currency="EUR"):
            ...

Responses come back as the API's own models (`projections.schemas`); error bodies as the
typed errors of `projections.errors` (`SessionNotFound`, `InvalidQuery`,
`ConsistencyTimeout`); a transport failure as `QueryUnavailable`. httpx exceptions stop
here. Pass ``transport=httpx.ASGITransport(app)`` to query an app in-process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date, datetime
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from projections.errors import QueryUnavailable, query_error
from projections.schemas import (
    CheckoutSession,
    ProviderStats,
    RoutingDecision,
    SessionPage,
    TimelineEvent,
)

__all__ = ["QueryClient"]

M = TypeVar("M", bound=BaseModel)

_EVENTS = TypeAdapter(list[TimelineEvent])
_ROUTING = TypeAdapter(list[RoutingDecision])


def _params(**values: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime | date):
            out[key] = value.isoformat()
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = str(value)
    return out


class QueryClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            response = await self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise QueryUnavailable(f"query service did not answer: {exc!r}") from exc
        if response.is_error:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            raise query_error(response.status_code, body if isinstance(body, dict) else {})
        return response.json()

    async def session(
        self,
        session_id: str,
        *,
        as_of: datetime | None = None,
        min_sequence: int | None = None,
    ) -> CheckoutSession:
        body = await self._get(
            f"/v1/checkout-sessions/{session_id}", _params(as_of=as_of, min_sequence=min_sequence)
        )
        return CheckoutSession.model_validate(body)

    async def sessions(
        self,
        *,
        status: str | None = None,
        provider: str | None = None,
        currency: str | None = None,
        customer_email: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        params = _params(
            status=status,
            provider=provider,
            currency=currency,
            customer_email=customer_email,
            created_from=created_from,
            created_to=created_to,
            limit=limit,
            cursor=cursor,
        )
        return SessionPage.model_validate(await self._get("/v1/checkout-sessions", params))

    async def iter_sessions(self, **filters: Any) -> AsyncIterator[CheckoutSession]:
        """Every session matching ``filters`` (the keywords of `sessions`), page by page."""
        cursor: str | None = None
        while True:
            page = await self.sessions(**filters, cursor=cursor)
            for session in page.data:
                yield session
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def events(
        self, session_id: str, *, min_sequence: int | None = None
    ) -> list[TimelineEvent]:
        body = await self._get(
            f"/v1/checkout-sessions/{session_id}/events", _params(min_sequence=min_sequence)
        )
        return _EVENTS.validate_python(body)

    async def routing_decisions(
        self, session_id: str, *, min_sequence: int | None = None
    ) -> list[RoutingDecision]:
        body = await self._get(
            f"/v1/checkout-sessions/{session_id}/routing-decisions",
            _params(min_sequence=min_sequence),
        )
        return _ROUTING.validate_python(body)

    async def provider_stats(
        self, start: date, end: date, *, by_day: bool = False
    ) -> ProviderStats:
        params = {"from": start.isoformat(), "to": end.isoformat(), **_params(by_day=by_day)}
        return ProviderStats.model_validate(await self._get("/v1/stats/providers", params))
