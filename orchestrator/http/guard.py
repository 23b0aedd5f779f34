"""The HTTP API's front door (pure ASGI, outermost): API keys, body size and JSON depth.

- every route needs ``Authorization: Bearer <key>`` except the signed provider webhooks
  (``POST /v1/webhooks/{provider}``), ``/healthz``, the API's own description
  (``/docs``, ``/openapi.json``) and the console (``/console/...``: its own sign-in,
  `orchestrator.http.console.auth`, which verifies keys with the same `ApiKeys`);
  GET/HEAD need a ``read`` or ``write`` key, anything else a ``write`` key:
  401 ``unauthenticated``, 403 ``forbidden``;
- a body over ``max_body`` bytes is 413 ``payload_too_large`` (by Content-Length before
  reading, or while reading); JSON nested deeper than ``max_depth`` is 400
  ``payload_too_deep``, before any parser recurses into it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse

from orchestrator.http.api_keys import ApiKeys, Scope

__all__ = ["MAX_BODY_BYTES", "MAX_JSON_DEPTH", "HttpGuard", "document_auth", "json_depth"]

MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 64

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

_WEBHOOK = re.compile(r"^/v1/webhooks/[^/]+/?$")
_CONSOLE = "/console"
_OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")
_READ_METHODS = frozenset({"GET", "HEAD"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_depth(body: bytes, limit: int) -> int:
    """The nesting depth of a JSON text, stopping as soon as it exceeds ``limit``."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return 0  # cannot be deeper than the limit: skip the scan
    depth = deepest = 0
    for bracket in _BRACKETS.finditer(_STRINGS.sub(b"", body)):
        depth += 1 if bracket.group() in (b"[", b"{") else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def _exempt(method: str, path: str) -> bool:
    console = path == _CONSOLE or path.startswith(f"{_CONSOLE}/")  # its own auth
    return console or path in _OPEN_PATHS or (method == "POST" and _WEBHOOK.match(path) is not None)


def _bearer(scope: Message) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else None
    return None


def _content_length(scope: Message) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class HttpGuard:
    """ASGI middleware; ``keys=None`` turns authentication off (``CHECKOUT_API_AUTH=disabled``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: ApiKeys | None,
        max_body: int = MAX_BODY_BYTES,
        max_depth: int = MAX_JSON_DEPTH,
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_body = max_body
        self.max_depth = max_depth

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        if self.keys is not None and not _exempt(method, path):
            refusal = await _authorise(self.keys, scope, method)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        if method in _BODY_METHODS:
            body, refusal = await self._body(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, send)

    async def _body(self, scope: Message, receive: Receive) -> tuple[bytes, JSONResponse | None]:
        too_large = _error(413, "payload_too_large", f"the body exceeds {self.max_body} bytes")
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            return b"", too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # disconnected: the app will see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_depth(body, self.max_depth) > self.max_depth:
            deep = f"JSON nested deeper than {self.max_depth} levels"
            return b"", _error(400, "payload_too_deep", deep)
        return body, None


async def _authorise(keys: ApiKeys, scope: Message, method: str) -> JSONResponse | None:
    token = _bearer(scope)
    challenge = {"www-authenticate": "Bearer"}
    if token is None:
        return _error(401, "unauthenticated", "an API key is required", **challenge)
    granted = await keys.verify(token)
    if granted is None:
        return _error(401, "unauthenticated", "the API key is not valid", **challenge)
    if method not in _READ_METHODS and granted is not Scope.WRITE:
        return _error(403, "forbidden", "this API key may only read")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


_AUTH_RESPONSES = {
    "401": {"description": "no API key, or not a valid one (`unauthenticated`)"},
    "403": {"description": "the API key may only read (`forbidden`)"},
}
_BODY_RESPONSES = {
    "400": {"description": "JSON nested too deeply (`payload_too_deep`)"},
    "413": {"description": "the body exceeds 1 MiB (`payload_too_large`)"},
}


def document_auth(app: FastAPI, *, required: bool) -> None:
    """Describe the guard in the served OpenAPI: the bearer scheme and its answers."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        if required:
            components = schema.setdefault("components", {})
            components.setdefault("securitySchemes", {})["ApiKey"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "an API key, `ck_<id>_<secret>` (checkout-orchestrator api-keys)",
            }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                if required and not _exempt(method.upper(), path.replace("{provider}", "x")):
                    operation["security"] = [{"ApiKey": []}]
                    for status, answer in _AUTH_RESPONSES.items():
                        responses.setdefault(status, answer)
                if method.upper() in _BODY_METHODS:
                    for status, answer in _BODY_RESPONSES.items():
                        responses.setdefault(status, answer)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
