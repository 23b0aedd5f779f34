"""The processes a benchmark runs beside itself, so load and work don't share one core:
our own roles through the real CLI, and a collector stand-in that receives their spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

__all__ = ["Child", "OtlpSink", "cli_process", "otlp_sink"]

_READY_TIMEOUT = 60.0
_BESIDE = Path(sys.executable).with_name("py-spy")  # installed with the bench extra
_PY_SPY = str(_BESIDE) if _BESIDE.exists() else "py-spy"


@dataclass(frozen=True, slots=True)
class Child:
    process: asyncio.subprocess.Process
    ready_line: str  # the line that said it was ready ("" when not waited for)

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def cli_process(
    arguments: list[str],
    environment: Mapping[str, str],
    *,
    ready: str | None = None,
    profile: Path | None = None,
) -> AsyncIterator[Child]:
    """``checkout-orchestrator <arguments>`` (``python -m bench ...`` when the first argument
    is ``bench``) with ``environment`` added; when ``ready`` is
    given, wait until the process prints a line containing it. Its standard error is kept
    in a temporary file and shown if it fails. With ``profile`` (a directory), py-spy
    samples the process for its whole life into a flame graph there."""
    program, command = ("orchestrator.cli", arguments)
    if arguments[:1] == ["bench"]:
        program, command = ("bench.cli", arguments[1:])
    with tempfile.TemporaryFile() as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            f"from {program} import app; app()",
            *command,
            env={**os.environ, **environment, "COLUMNS": "400"},
            stdout=asyncio.subprocess.PIPE if ready else asyncio.subprocess.DEVNULL,
            stderr=errors,
        )
        try:
            line = ""
            if ready is not None and process.stdout is not None:
                line = await asyncio.wait_for(_wait_for_line(process.stdout, ready), _READY_TIMEOUT)
            async with _sampled(process.pid, arguments, profile):
                yield Child(process, line)
        finally:
            failed = process.returncode not in (None, 0)
            if process.returncode is None:
                process.terminate()
            await process.wait()
            errors.seek(0)
            if failed:
                detail = errors.read().decode(errors="replace")[-4000:]
                raise RuntimeError(f"{' '.join(arguments)} failed:\n{detail}")


@contextlib.asynccontextmanager
async def _sampled(pid: int, arguments: list[str], profile: Path | None) -> AsyncIterator[None]:
    if profile is None:
        yield
        return
    name = "-".join(a.removeprefix("--") for a in arguments) or "process"
    output = profile / f"{name}-{pid}.svg"
    spy = await asyncio.create_subprocess_exec(
        _PY_SPY, "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
        "--output", str(output),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its flame graph on SIGINT
        await spy.wait()


async def _wait_for_line(stream: asyncio.StreamReader, text: str) -> str:
    while raw := await stream.readline():
        if text in (line := raw.decode(errors="replace")):
            return line
    raise RuntimeError(f"the process ended before printing {text!r}")


class OtlpSink:
    """Accepts OTLP/HTTP exports and counts them: tracing is on, at no collector's cost."""

    def __init__(self) -> None:
        sink = self

        class _Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                sink.requests += 1
                sink.bytes += length
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                return

        self.requests = 0
        self.bytes = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"


@contextlib.contextmanager
def otlp_sink() -> Iterator[OtlpSink]:
    sink = OtlpSink()
    thread = threading.Thread(target=sink._server.serve_forever, daemon=True)  # noqa: SLF001
    thread.start()
    try:
        yield sink
    finally:
        sink._server.shutdown()  # noqa: SLF001
        sink._server.server_close()  # noqa: SLF001
