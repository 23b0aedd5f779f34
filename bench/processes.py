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

__all__ = ["Child", "CpuClock", "OtlpSink", "cli_process", "cpu_seconds", "otlp_sink"]

_READY_TIMEOUT = 60.0
_BESIDE = Path(sys.executable).with_name("py-spy")  # installed with the bench extra
_PY_SPY = str(_BESIDE) if _BESIDE.exists() else "py-spy"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (Linux), None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and of every live process below it (the
    workers `up --workers N` starts), from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for member in (pid, *_tree(pid)):
        fields = _stat(member)
        if fields is not None:  # utime and stime: fields 14 and 15 of stat(5)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        below = children.get(queue.pop(), [])
        found.extend(below)
        queue.extend(below)
    return found


@dataclass
class CpuClock:
    """CPU time a process tree spends while a load runs: ``async with clock.timing()``."""

    pids: tuple[int, ...]
    seconds: float = 0.0

    @contextlib.asynccontextmanager
    async def timing(self) -> AsyncIterator[None]:
        before = sum(map(cpu_seconds, self.pids))
        try:
            yield
        finally:
            self.seconds += sum(map(cpu_seconds, self.pids)) - before

    def per(self, count: int) -> float:
        """Microseconds of CPU per unit of work."""
        return self.seconds / count * 1e6 if count else 0.0


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
    # BENCH_PROFILE_FORMAT=raw: collapsed stacks (one line per stack), to add up by hand
    form = os.environ.get("BENCH_PROFILE_FORMAT", "flamegraph")
    output = profile / f"{name}-{pid}.{'svg' if form == 'flamegraph' else 'txt'}"
    spy = await asyncio.create_subprocess_exec(
        _PY_SPY, "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
        "--subprocesses", "--format", form, "--output", str(output),
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
