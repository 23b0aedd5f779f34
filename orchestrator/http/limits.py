"""Request bodies within limits: size and JSON depth, checked before anything parses them.

`limited_body` is a FastAPI dependency the routes that take a body declare after their
auth dependency (so an unauthenticated caller is refused before its body is read):

- a body over ``MAX_BODY_BYTES`` is 413 ``payload_too_large``, by Content-Length before
  reading, or as soon as the stream passes the limit;
- JSON nested deeper than ``MAX_JSON_DEPTH`` is 400 ``payload_too_deep``, before any
  parser recurses into it.

`json_body` documents a JSON request body in OpenAPI for routes that read it this way.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from orchestrator.errors import PayloadTooDeep, PayloadTooLarge

__all__ = [
    "BODY_RESPONSES",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "json_body",
    "json_depth",
    "limited_body",
]

MAX_BODY_BYTES = 1 << 20
MAX_JSON_DEPTH = 64

BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "JSON nested too deeply (`payload_too_deep`)"},
    413: {"description": "the body exceeds 1 MiB (`payload_too_large`)"},
}

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(rb"[\[\]{}]")


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


async def limited_body(request: Request) -> bytes:
    """The request's body, refused when it is too large or too deeply nested."""
    too_large = PayloadTooLarge(f"the body exceeds {MAX_BODY_BYTES} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if json_depth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise PayloadTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def json_body(
    description: str, *, schema: dict[str, Any] | None = None, required: bool = True
) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a JSON object with `limited_body`."""
    return {
        "requestBody": {
            "required": required,
            "description": description,
            "content": {"application/json": {"schema": schema or {"type": "object"}}},
        }
    }
