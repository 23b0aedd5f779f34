"""The console's pages, added to the HTTP app under ``/console``.

    GET  /console/login, POST /console/login, POST /console/logout
    GET  /console/sessions            the list, with the API's filters; rows poll live
    GET  /console/sessions/rows       the rows alone (htmx polls it every few seconds)
    GET  /console/sessions/{id}       timeline, routing explanation, references, trace;
                                      ?as_of= shows the state at that instant
    GET  /console/providers           circuits, recent calls, totals with a chart
    GET  /console/webhooks            the inbox by status;  POST .../{row}/replay (write)
    GET  /console/projections         lag per read model and partition, parked events
    GET  /console/backtest            candidate rules over the history (POST runs it)

Looking needs a session signed in with a read or write key, acting a write key and the
session's CSRF token (`auth`). Pages are server-rendered (Jinja2, autoescaped) with htmx
for the live parts; every asset is served from ``/console/static`` and the
Content-Security-Policy allows nothing else (no inline script or style).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from nats.aio.client import Client as NatsClient

from events.values import Provider, SessionStatus
from orchestrator.errors import CheckoutError
from orchestrator.http.console import views
from orchestrator.http.console.auth import (
    COOKIE,
    LOGIN_COOKIE,
    SESSION_SECONDS,
    ConsoleAuth,
    ConsoleForbidden,
    ConsoleLoginRequired,
    ConsoleSession,
)
from orchestrator.http.console.charts import STATUS_COLOURS, totals_chart
from orchestrator.routing.backtest_report import move_rows, outcome_rows
from orchestrator.routing.health import HealthBoard
from orchestrator.routing.rules import parse_rules
from orchestrator.services.backtesting import run_backtest
from projections import EventSource, ReadModels
from projections.errors import QueryError, SessionNotFound
from projections.queries import SessionFilters

__all__ = ["ConsoleDeps", "add_console"]

_HERE = Path(__file__).parent
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_PAGE = 50


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    """What the console reads and acts on; built by the composition root."""

    auth: ConsoleAuth
    reads: ReadModels
    pool: asyncpg.Pool
    nc: NatsClient
    source: EventSource
    providers: tuple[Provider, ...]
    health: HealthBoard | None = None
    wake_webhooks: Callable[[], None] | None = None
    trace_url_template: str | None = None
    """e.g. ``http://localhost:16686/trace/{trace_id}``: trace ids become links"""


def _local(instant: str | None) -> datetime | None:
    """A ``datetime-local`` picker's value (no zone) as UTC; ISO with a zone as given."""
    if not instant:
        return None
    parsed = datetime.fromisoformat(instant)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _filters(params: Mapping[str, str]) -> SessionFilters:
    def enum_or_none(kind: Any, value: str | None) -> Any:
        return kind(value) if value else None

    currency = (params.get("currency") or "").strip().upper() or None
    return SessionFilters(
        status=enum_or_none(SessionStatus, params.get("status")),
        provider=enum_or_none(Provider, params.get("provider")),
        currency=currency,
        customer_email=(params.get("customer_email") or "").strip() or None,
        created_from=_local(params.get("created_from")),
        created_to=_local(params.get("created_to")),
    )


def _auth(request: Request) -> ConsoleAuth:
    auth: ConsoleAuth = request.app.state.console_auth  # set by add_console
    return auth


async def _viewer(request: Request) -> ConsoleSession:
    return await _auth(request).viewer(request)


async def _actor(request: Request) -> ConsoleSession:
    return await _auth(request).actor(request)


async def _reader_post(request: Request) -> ConsoleSession:
    return await _auth(request).reader_post(request)


Viewer = Annotated[ConsoleSession, Depends(_viewer)]
"""any signed-in session"""
ReaderPost = Annotated[ConsoleSession, Depends(_reader_post)]
"""a POST that changes nothing: signed in, CSRF token checked"""


class _Pages:
    """Renders a template with the headers every console page carries."""

    def __init__(self, auth: ConsoleAuth) -> None:
        self.auth = auth
        self.templates = Jinja2Templates(directory=_HERE / "templates")
        self.templates.env.globals["status_colours"] = STATUS_COLOURS

    def __call__(
        self, request: Request, name: str, session: ConsoleSession | None, **context: Any
    ) -> HTMLResponse:
        response = self.templates.TemplateResponse(
            request, name, {"session": session, "auth_required": self.auth.required, **context}
        )
        response.headers["content-security-policy"] = _CSP
        response.headers["cache-control"] = "no-store"
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["referrer-policy"] = "same-origin"
        return response

    def problem(
        self, request: Request, session: ConsoleSession | None, message: str, status: int
    ) -> HTMLResponse:
        response = self(request, "error.html", session, message=message)
        response.status_code = status
        return response


def add_console(app: FastAPI, deps: ConsoleDeps) -> None:
    """Mount the console's pages, static files and error pages on ``app``."""
    app.state.console_auth = deps.auth
    pages = _Pages(deps.auth)
    router = APIRouter(prefix="/console", include_in_schema=False)
    _error_pages(app, pages)
    _sign_in_routes(router, deps.auth, pages)
    _session_routes(router, deps, pages)
    _operations_routes(router, deps, pages)
    _backtest_routes(router, deps, pages)
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=_HERE / "static"), name="console-static")


def _error_pages(app: FastAPI, pages: _Pages) -> None:
    @app.exception_handler(ConsoleLoginRequired)
    async def login_required(request: Request, _: ConsoleLoginRequired) -> Response:
        if request.headers.get("hx-request"):  # htmx: reload the whole page into the login
            return Response(status_code=204, headers={"hx-redirect": "/console/login"})
        return RedirectResponse("/console/login", status_code=303)

    @app.exception_handler(ConsoleForbidden)
    async def forbidden(request: Request, exc: ConsoleForbidden) -> Response:
        return pages.problem(request, None, exc.message, 403)


def _sign_in_routes(router: APIRouter, auth: ConsoleAuth, pages: _Pages) -> None:
    @router.get("", response_class=HTMLResponse)
    async def home() -> Response:
        return RedirectResponse("/console/sessions", status_code=303)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, failed: bool = False) -> Response:  # noqa: FBT001, FBT002
        if not auth.required:
            return RedirectResponse("/console/sessions", status_code=303)
        token = secrets.token_urlsafe(24)
        response = pages(request, "login.html", None, login_token=token, failed=failed)
        auth.set_cookie(response, request, LOGIN_COOKIE, token, 600)
        return response

    @router.post("/login")
    async def login(
        request: Request, api_key: Annotated[str, Form()], login_token: Annotated[str, Form()]
    ) -> Response:
        expected = request.cookies.get(LOGIN_COOKIE) or ""
        if not expected or not secrets.compare_digest(expected, login_token):
            raise ConsoleForbidden("the login form expired; reload it")
        session = await auth.sign_in(api_key)
        if session is None:
            return RedirectResponse("/console/login?failed=true", status_code=303)
        response = RedirectResponse("/console/sessions", status_code=303)
        auth.set_cookie(response, request, COOKIE, session.token, SESSION_SECONDS)
        response.delete_cookie(LOGIN_COOKIE, path="/console")
        return response

    @router.post("/logout")
    async def logout(session: ReaderPost) -> Response:
        auth.sessions.close(session.token)
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response


async def _listing(reads: ReadModels, params: dict[str, str]) -> dict[str, Any]:
    """The rows of the sessions page, its next page's query, or the problem with a filter."""
    try:
        filters = _filters(params)
        listing = await reads.sessions(filters, limit=_PAGE, cursor=params.get("cursor") or None)
    except (ValueError, QueryError) as exc:
        return {"listing": None, "problem": str(exc), "next_query": None}
    kept = {k: v for k, v in params.items() if v and k != "cursor"}
    cursor = listing.next_cursor
    return {
        "listing": listing,
        "problem": None,
        "next_query": urlencode({**kept, "cursor": cursor}) if cursor else None,
    }


def _session_routes(router: APIRouter, deps: ConsoleDeps, pages: _Pages) -> None:
    @router.get("/sessions", response_class=HTMLResponse)
    async def sessions(request: Request, session: Viewer) -> Response:
        params = dict(request.query_params)
        return pages(
            request, "sessions.html", session, params=params, statuses=list(SessionStatus),
            providers=list(Provider), query=urlencode({k: v for k, v in params.items() if v}),
            **await _listing(deps.reads, params),
        )  # fmt: skip

    @router.get("/sessions/rows", response_class=HTMLResponse)
    async def sessions_rows(request: Request, session: Viewer) -> Response:
        listed = await _listing(deps.reads, dict(request.query_params))
        return pages(request, "_session_rows.html", session, **listed)

    @router.get("/sessions/{session_id}", response_class=HTMLResponse)
    async def session_detail(
        request: Request,
        session_id: str,
        session: Viewer,
        as_of: Annotated[str | None, Query()] = None,
    ) -> Response:
        try:
            context = await _session_context(deps, session_id, _local(as_of))
        except SessionNotFound:
            return pages.problem(request, session, f"no checkout session {session_id}", 404)
        except (ValueError, QueryError) as exc:
            return pages.problem(request, session, str(exc), 400)
        return pages(request, "session.html", session, **context)


async def _session_context(
    deps: ConsoleDeps, session_id: str, instant: datetime | None
) -> dict[str, Any]:
    current = await deps.reads.session(session_id)
    shown = await deps.reads.session_as_of(session_id, instant) if instant else current
    events = await deps.reads.events(session_id)
    template = deps.trace_url_template
    trace_ids = sorted({e.trace_id for e in events if e.trace_id})
    return {
        "current": current,
        "shown": shown,
        "events": events,
        "routing": await deps.reads.routing(session_id),
        "trace_links": {t: template.format(trace_id=t) if template else None for t in trace_ids},
        "as_of": instant,
        "as_of_value": instant.strftime("%Y-%m-%dT%H:%M:%S") if instant else "",
    }


def _operations_routes(router: APIRouter, deps: ConsoleDeps, pages: _Pages) -> None:
    @router.get("/providers", response_class=HTMLResponse)
    async def providers(request: Request, session: Viewer, days: int = 30) -> Response:
        days = min(max(days, 1), 365)
        today = datetime.now(UTC).date()
        stats = await deps.reads.provider_stats(today - timedelta(days=days - 1), today)
        return pages(
            request, "providers.html", session,
            health=views.provider_health(deps.health, deps.providers),
            routes_here=deps.health is not None, configured=[p.value for p in deps.providers],
            totals=stats.data, chart=totals_chart(stats.data), days=days, start=stats.start,
            end=stats.end,
        )  # fmt: skip

    @router.get("/webhooks", response_class=HTMLResponse)
    async def webhooks(request: Request, session: Viewer, status: str | None = None) -> Response:
        wanted = status if status in views.INBOX_STATUSES else None
        return pages(
            request, "webhooks.html", session,
            entries=await views.inbox_entries(deps.pool, wanted),
            counts=await views.inbox_counts(deps.pool), statuses=views.INBOX_STATUSES,
            wanted=wanted, replayed=request.query_params.get("replayed"),
        )  # fmt: skip

    @router.post("/webhooks/{row_id}/replay", dependencies=[Depends(_actor)])
    async def replay(row_id: int) -> Response:
        replayed = await views.replay_webhook(deps.pool, row_id)
        if replayed and deps.wake_webhooks is not None:
            deps.wake_webhooks()
        outcome = row_id if replayed else "none"
        return RedirectResponse(f"/console/webhooks?replayed={outcome}", status_code=303)

    @router.get("/projections", response_class=HTMLResponse)
    async def projections(request: Request, session: Viewer) -> Response:
        report = await views.projection_status(deps.pool, deps.nc, deps.source)
        return pages(request, "projections.html", session, report=report)


def _backtest_routes(router: APIRouter, deps: ConsoleDeps, pages: _Pages) -> None:
    @router.get("/backtest", response_class=HTMLResponse)
    async def backtest_form(request: Request, session: Viewer) -> Response:
        return pages(request, "backtest.html", session, rules="", since="", report=None)

    @router.post("/backtest", response_class=HTMLResponse)
    async def backtest(
        request: Request,
        session: ReaderPost,
        rules: Annotated[str, Form()],
        since: Annotated[str, Form()] = "",
    ) -> Response:
        try:
            candidate = parse_rules(rules, source="candidate rules")
            report = await run_backtest(deps.reads, candidate, _local(since))
        except CheckoutError as exc:
            return pages(
                request, "backtest.html", session, rules=rules, since=since, problem=exc.message
            )
        except ValueError as exc:
            return pages(
                request, "backtest.html", session, rules=rules, since=since, problem=str(exc)
            )
        return pages(
            request, "backtest.html", session, rules=rules, since=since, report=report,
            moves=move_rows(report), outcomes=outcome_rows(report),
        )  # fmt: skip
