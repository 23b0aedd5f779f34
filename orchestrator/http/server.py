"""Serve an ASGI app with uvicorn inside the *current* asyncio loop (the API and the simulators).

`HttpServer` owns one uvicorn server: `start()` binds a socket (port 0 = a free
port picked by the OS) and returns once uvicorn accepts connections; `base_url` is then
``http://127.0.0.1:<port>``; `stop()` shuts it down and waits for it; `start()` again
serves on the same port (a provider outage and recovery). It never touches
process signals or the logging configuration: the host process (pytest, the CLI) owns
both. Also an async context manager::

    async with HttpServer(app) as server:
        httpx.get(f"{server.base_url}/...")
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from types import TracebackType
from typing import Self

import uvicorn
from starlette.types import ASGIApp

from orchestrator.errors import InfrastructureError

__all__ = ["HttpServer", "HttpServerError"]

_START_TIMEOUT = 10.0
_POLL = 0.01


class HttpServerError(InfrastructureError):
    """uvicorn exited or did not start listening in time."""

    code = "http_server_failed"


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without signal capture: Ctrl-C belongs to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        graceful_shutdown_seconds: int = 1,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._graceful = graceful_shutdown_seconds
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._bound_port: int | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("server not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("server already started")
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every response waits ~40 ms on the peer's delayed ACK (Nagle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._bound_port or self._port))  # a restart keeps its port
        self._bound_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            http="h11",
            ws="none",
            timeout_graceful_shutdown=self._graceful,
        )
        server = _EmbeddedUvicorn(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="sandbox-server")
        self._server, self._task = server, task
        await self._wait_started(server, task, sock)

    async def _wait_started(
        self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT
        while not server.started:
            if task.done() or loop.time() > deadline:
                await self._abort(sock)
                raise HttpServerError(f"uvicorn did not start on {self._host}:{self._port}")
            await asyncio.sleep(_POLL)

    async def _abort(self, sock: socket.socket) -> None:
        task, self._task = self._task, None
        sock.close()
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(BaseException):
                await task

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (bounded), then return."""
        task, server = self._task, self._server
        self._task = None
        if task is None or server is None:
            return
        server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self._graceful + 5.0)
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
