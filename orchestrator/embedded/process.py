"""What the embedded servers share: loopback ports, process checks, log tails, the error."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

from orchestrator.errors import InfrastructureError

HOST = "127.0.0.1"
_LOG_TAIL_BYTES = 4000
POLL_SECONDS = 0.05


class EmbeddedServerError(InfrastructureError):
    """An embedded server could not be found, started or stopped. The message has the log tail."""

    code = "embedded_server_failed"


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - limit))
            data = log.read()
    except OSError as exc:
        return f"(no log at {path}: {exc})"
    text = data.decode("utf-8", errors="replace")
    prefix = "...\n" if size > limit else ""
    return f"--- {path} (tail) ---\n{prefix}{text}"


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (zombies count as dead: nothing reaps them here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no procfs (or the process just went away): trust kill(0)
    state = stat_line.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"])


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (via /proc; empty where there is no procfs)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text(errors="replace").rpartition(")")[2].split()
            except OSError:
                continue
            if len(fields) > 1 and fields[1] == str(pid):
                found.append(int(entry.name))
    return found


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3]))


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (held open until all are picked)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


class NotReady(EmbeddedServerError):
    """A server is not answering yet (the readiness probe goes on polling)."""

    code = "server_not_ready"
