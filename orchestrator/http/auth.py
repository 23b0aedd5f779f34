"""Who may call the HTTP API: API keys, checked by FastAPI security dependencies.

A route declares what it needs once, with ``dependencies=auth.read`` (GET queries: a
``read`` or ``write`` key) or ``dependencies=auth.write`` (commands: a ``write`` key); the
served OpenAPI document follows from those declarations (the ``ApiKey`` bearer scheme and
each operation's ``security``). Routes that declare neither are open: the signed provider
webhooks (their signature is their authentication), ``/healthz`` and the API description.

Refusals are typed errors of the one tree: 401 ``unauthenticated`` (no key, not a key of
ours, revoked; with ``WWW-Authenticate: Bearer``) and 403 ``forbidden`` (a read key sending
a command). With ``CHECKOUT_API_AUTH=disabled`` (``keys=None``) routes declare nothing and
the document has no security scheme. Dependencies run before the request body is read, so a
caller without a valid key is refused before anything parses what it sent.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.errors import Forbidden, Unauthenticated
from orchestrator.http.api_keys import ApiKeys, Scope

__all__ = ["AUTH_RESPONSES", "ApiKeyAuth"]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "no API key, or not a valid one (`unauthenticated`)"},
    403: {"description": "the API key may only read (`forbidden`)"},
}

_BEARER = HTTPBearer(
    scheme_name="ApiKey",
    description="an API key, `ck_<id>_<secret>` (checkout-orchestrator api-keys)",
    auto_error=False,
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]


class ApiKeyAuth:
    """The dependencies routes declare; ``keys=None`` turns authentication off."""

    def __init__(self, keys: ApiKeys | None) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return self._keys is not None

    @property
    def read(self) -> list[Any]:
        """Route dependencies of a query: any valid key."""
        return self._requires(Scope.READ)

    @property
    def write(self) -> list[Any]:
        """Route dependencies of a command: a ``write`` key."""
        return self._requires(Scope.WRITE)

    @property
    def responses(self) -> dict[int | str, dict[str, Any]]:
        """The refusals to document on protected routes."""
        return AUTH_RESPONSES if self.enabled else {}

    def install(self, app: FastAPI) -> None:
        """Render 401 with its challenge header (the other errors need no header)."""

        @app.exception_handler(Unauthenticated)
        async def unauthenticated(_: Request, exc: Unauthenticated) -> JSONResponse:
            return JSONResponse(
                exc.to_dict(), status_code=exc.status, headers={"www-authenticate": "Bearer"}
            )

    def _requires(self, scope: Scope) -> list[Any]:
        keys = self._keys
        if keys is None:
            return []

        async def check(credentials: Credentials) -> Scope:
            if credentials is None:
                raise Unauthenticated("an API key is required")
            granted = await keys.verify(credentials.credentials)
            if granted is None:
                raise Unauthenticated("the API key is not valid")
            if scope is Scope.WRITE and granted is not Scope.WRITE:
                raise Forbidden("this API key may only read")
            return granted

        return [Depends(check)]
