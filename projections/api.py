"""The query surface over HTTP: a FastAPI app built around a `ReadModels` (OpenAPI at /docs).

    GET /v1/checkout-sessions/{id}                      ?as_of=&min_sequence=
    GET /v1/checkout-sessions                           ?status=&provider=&currency=
                                                        &customer_email=&created_from=
                                                        &created_to=&limit=&cursor=
    GET /v1/checkout-sessions/{id}/events               ?min_sequence=
    GET /v1/checkout-sessions/{id}/routing-decisions    ?min_sequence=
    GET /v1/stats/providers                             ?from=&to=&by_day=
    GET /v1/operator/parked-events                      ?projection=&limit=
    GET /healthz

``min_sequence`` may also come as the ``Checkout-Min-Sequence`` header. Errors are JSON
``{"code", "message", ...}``: 400 ``invalid_query`` (bad filter, cursor, instant),
404 ``session_not_found``, 503 ``query_unavailable`` (the database is down or restarting: retry),
504 ``consistency_timeout``. The operator route lists the parked events (an alarm: each
is a hole in a read model until ``projections replay-parked`` applies it); it is there
when the composition root passes a `ParkedEvents`. The app owns no connection: the
composition root opens the pool, builds `ReadModels` and closes the pool after serving.
It also says who may query: `create_app`'s ``dependencies`` (and the ``responses`` they add)
go on every query route, so that this package needs nothing of the write side's API keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Query, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from events.values import Provider, SessionStatus
from projections.errors import CheckoutError
from projections.parked import ParkedEvents
from projections.queries import MAX_PAGE, ReadModels, SessionFilters
from projections.schemas import (
    CheckoutSession,
    ErrorBody,
    ParkedEventBody,
    ParkedEventList,
    ProviderStats,
    RoutingDecision,
    SessionPage,
    TimelineEvent,
)

__all__ = ["MIN_SEQUENCE_HEADER", "create_app"]

MIN_SEQUENCE_HEADER = "Checkout-Min-Sequence"

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "invalid_query"},
    404: {"model": ErrorBody, "description": "session_not_found"},
    503: {"model": ErrorBody, "description": "query_unavailable"},
    504: {"model": ErrorBody, "description": "consistency_timeout"},
}

MinSequence = Annotated[
    int | None,
    Query(ge=1, description="wait (bounded) until the read model applied this stream sequence"),
]
MinSequenceHeader = Annotated[int | None, Header(alias=MIN_SEQUENCE_HEADER, ge=1)]


def _error(status: int, code: str, message: str, **details: object) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, **details}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CheckoutError)
    async def query_error(_: Request, exc: CheckoutError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        message = f"{'.'.join(first['loc'][1:]) or 'request'}: {first['msg']}"
        return _error(400, "invalid_query", message, errors=errors)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else "http_error"
        return _error(exc.status_code, code, str(exc.detail))


def _sessions_routes(app: APIRouter, reads: ReadModels) -> None:
    @app.get(
        "/v1/checkout-sessions/{session_id}", response_model=CheckoutSession, responses=_ERRORS
    )
    async def get_session(
        session_id: str,
        as_of: Annotated[datetime | None, Query(description="state as of this instant")] = None,
        min_sequence: MinSequence = None,
        header_sequence: MinSequenceHeader = None,
    ) -> CheckoutSession:
        wanted = min_sequence or header_sequence
        if as_of is not None:
            return await reads.session_as_of(session_id, as_of, min_sequence=wanted)
        return await reads.session(session_id, min_sequence=wanted)

    @app.get("/v1/checkout-sessions", response_model=SessionPage, responses=_ERRORS)
    async def list_sessions(
        status: SessionStatus | None = None,
        provider: Provider | None = None,
        currency: Annotated[str | None, Query(pattern=r"^[A-Za-z]{3}$")] = None,
        customer_email: str | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: str | None = None,
    ) -> SessionPage:
        filters = SessionFilters(
            status, provider, currency, customer_email, created_from, created_to
        )
        return await reads.sessions(filters, limit=limit, cursor=cursor)


def _detail_routes(app: APIRouter, reads: ReadModels) -> None:
    @app.get(
        "/v1/checkout-sessions/{session_id}/events",
        response_model=list[TimelineEvent],
        responses=_ERRORS,
    )
    async def session_events(
        session_id: str,
        min_sequence: MinSequence = None,
        header_sequence: MinSequenceHeader = None,
    ) -> list[TimelineEvent]:
        return await reads.events(session_id, min_sequence=min_sequence or header_sequence)

    @app.get(
        "/v1/checkout-sessions/{session_id}/routing-decisions",
        response_model=list[RoutingDecision],
        responses=_ERRORS,
    )
    async def routing_decisions(
        session_id: str,
        min_sequence: MinSequence = None,
        header_sequence: MinSequenceHeader = None,
    ) -> list[RoutingDecision]:
        return await reads.routing(session_id, min_sequence=min_sequence or header_sequence)

    @app.get("/v1/stats/providers", response_model=ProviderStats, responses=_ERRORS)
    async def provider_stats(
        start: Annotated[date, Query(alias="from", description="first day (UTC), inclusive")],
        end: Annotated[date, Query(alias="to", description="last day (UTC), inclusive")],
        by_day: bool = False,  # noqa: FBT001, FBT002 - a query flag
    ) -> ProviderStats:
        return await reads.provider_stats(start, end, by_day=by_day)


def _operator_routes(app: APIRouter, parked: ParkedEvents) -> None:
    @app.get(
        "/v1/operator/parked-events",
        response_model=ParkedEventList,
        responses=_ERRORS,
        tags=["operator"],
    )
    async def parked_events(
        projection: Annotated[
            str | None, Query(pattern="^[a-z_]{1,40}$", description="one projection only")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> ParkedEventList:
        """Events the projections could not apply; empty in a healthy system."""
        count, events = await parked.page(projection=projection, limit=limit)
        return ParkedEventList(count=count, data=[ParkedEventBody(**asdict(e)) for e in events])


def create_app(
    reads: ReadModels,
    *,
    parked: ParkedEvents | None = None,
    dependencies: Sequence[params.Depends] = (),
    responses: Mapping[int | str, dict[str, object]] | None = None,
) -> FastAPI:
    """The HTTP app over ``reads``; serve it with uvicorn (see `orchestrator.bootstrap`).

    ``dependencies`` guard every query route (the composition root passes the API-key
    check); ``responses`` document what they answer; with ``parked``, the operator route."""
    app = FastAPI(
        title="Checkout read models",
        version="1",
        description="Queries over the projections of the checkout event stream.",
    )
    _install_error_handlers(app)
    queries = APIRouter(dependencies=list(dependencies), responses=dict(responses or {}))
    _sessions_routes(queries, reads)
    _detail_routes(queries, reads)
    if parked is not None:
        _operator_routes(queries, parked)
    app.include_router(queries)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
