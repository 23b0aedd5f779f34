"""The console's own sign-in: an API key in a login form becomes an opaque session cookie.

- Login: the key is checked with `ApiKeys.verify` (the API's own verification, scope
  included) and kept **server-side** in `ConsoleSessions`; the browser gets only a random
  token in an ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/console`` (``Secure``
  over HTTPS). The key never appears in a page, a URL or a script-readable cookie.
- Every request re-verifies the stored key (``ApiKeys`` caches for a few seconds), so a
  revoked key locks its console sessions out at once, as it does the API.
- CSRF: each session has its own random token, put in every form and compared (in
  constant time) on every POST; ``SameSite=Strict`` keeps other sites' requests from
  carrying the cookie at all. The login form itself uses a double-submit token (a
  short-lived cookie and the same value in the form).
- With ``CHECKOUT_API_AUTH=disabled`` (``keys`` is None) there is no login: everyone has
  the write scope, as on the API.

Sessions live in this process's memory (bounded, expiring): a restart signs everyone out,
and several API processes behind one address need sticky sessions for the console.

Errors (in `orchestrator.errors`' tree): `ConsoleLoginRequired` (``console_login_required``,
answered with a redirect to the login page), `ConsoleForbidden` (``console_forbidden``: a
read key tried to act, or a POST without its CSRF token; 403).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from orchestrator.errors import CheckoutError
from orchestrator.http.api_keys import ApiKeys, Scope

__all__ = [
    "COOKIE",
    "LOGIN_COOKIE",
    "ConsoleAuth",
    "ConsoleForbidden",
    "ConsoleLoginRequired",
    "ConsoleSession",
    "ConsoleSessions",
]

COOKIE = "console_session"
LOGIN_COOKIE = "console_login"
COOKIE_PATH = "/console"
SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000


class ConsoleLoginRequired(CheckoutError):
    """No console session (or its key was revoked): the page answers with the sign-in form."""

    code = "console_login_required"
    status = 401


class ConsoleForbidden(CheckoutError):
    """A write action (replay) by a read key, or a POST without the session's CSRF token."""

    code = "console_forbidden"
    status = 403


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    token: str
    key: str | None
    """the API key, server-side only; None when API auth is disabled"""
    scope: Scope
    csrf: str
    expires_at: float

    @property
    def can_act(self) -> bool:
        return self.scope is Scope.WRITE


class ConsoleSessions:
    """Signed-in browsers, by opaque token; the oldest go first beyond ``limit``."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, limit: int = MAX_SESSIONS
    ) -> None:
        self._clock = clock
        self._limit = limit
        self._sessions: OrderedDict[str, ConsoleSession] = OrderedDict()

    def open(self, key: str | None, scope: Scope) -> ConsoleSession:
        session = ConsoleSession(
            token=secrets.token_urlsafe(32),
            key=key,
            scope=scope,
            csrf=secrets.token_urlsafe(32),
            expires_at=self._clock() + SESSION_SECONDS,
        )
        self._sessions[session.token] = session
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, token: str | None) -> ConsoleSession | None:
        session = self._sessions.get(token or "")
        if session is None or session.expires_at <= self._clock():
            self._sessions.pop(token or "", None)
            return None
        return session

    def close(self, token: str | None) -> None:
        self._sessions.pop(token or "", None)


class ConsoleAuth:
    """Who is looking: sign-in, sign-out and the per-request checks the routes depend on."""

    def __init__(self, keys: ApiKeys | None, sessions: ConsoleSessions) -> None:
        self.keys = keys
        self.sessions = sessions
        self._open = sessions.open(None, Scope.WRITE) if keys is None else None

    @property
    def required(self) -> bool:
        return self.keys is not None

    async def sign_in(self, presented: str) -> ConsoleSession | None:
        """A new session for a valid key, or None (the same answer for any wrong key)."""
        if self.keys is None:
            return self._open
        scope = await self.keys.verify(presented.strip())
        return None if scope is None else self.sessions.open(presented.strip(), scope)

    async def current(self, request: Request) -> ConsoleSession:
        """The signed-in session, its key still valid; else `ConsoleLoginRequired`."""
        if self._open is not None:
            return self._open
        session = self.sessions.get(request.cookies.get(COOKIE))
        if session is None or session.key is None or self.keys is None:
            raise ConsoleLoginRequired("sign in with an API key")
        scope = await self.keys.verify(session.key)
        if scope is None:  # revoked since sign-in
            self.sessions.close(session.token)
            raise ConsoleLoginRequired("the API key of this session is no longer valid")
        return session

    async def viewer(self, request: Request) -> ConsoleSession:
        """FastAPI dependency: any signed-in session (read or write scope)."""
        return await self.current(request)

    async def actor(self, request: Request) -> ConsoleSession:
        """FastAPI dependency for POSTs: write scope and the session's CSRF token."""
        session = await self.current(request)
        await self.check_csrf(request, session)
        if not session.can_act:
            raise ConsoleForbidden("this API key may only read")
        return session

    async def reader_post(self, request: Request) -> ConsoleSession:
        """FastAPI dependency for POSTs that change nothing (a backtest): CSRF only."""
        session = await self.current(request)
        await self.check_csrf(request, session)
        return session

    @staticmethod
    async def check_csrf(request: Request, session: ConsoleSession) -> None:
        form = await request.form()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not secrets.compare_digest(sent, session.csrf):
            raise ConsoleForbidden("the form's CSRF token is missing or wrong; reload the page")

    @staticmethod
    def set_cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=age,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
