"""Record every request a simulator answers, with its answer, over real HTTP.

`Recorder` is a pure ASGI middleware added to a simulator's app before it starts
(``sim.app.add_middleware(Recorder, log=exchanges)``): it keeps the method, path, query,
request headers and body, status and JSON answer of each call to the provider's API (the
``/_sim`` control routes are left out), so a contract test can validate what the adapter
sent and what the simulator answered, field by field, after the fact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.sandbox.faults import CONTROL_PREFIX

__all__ = ["Exchange", "Recorder"]


@dataclass
class Exchange:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes = b""
    status: int = 0
    answer: bytes = b""
    response_headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.answer)

    def request_json(self) -> Any:
        return json.loads(self.body)


class Recorder:
    def __init__(self, app: ASGIApp, log: list[Exchange]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        exchange = Exchange(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode(),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
        )
        self.log.append(exchange)

        async def recording_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                exchange.body += message.get("body", b"")
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.response_headers = {
                    k.decode().lower(): v.decode() for k, v in message.get("headers", [])
                }
            elif message["type"] == "http.response.body":
                exchange.answer += message.get("body", b"")
            await send(message)

        await self.app(scope, recording_receive, recording_send)
