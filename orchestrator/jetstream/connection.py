"""How every NATS connection of the project authenticates and encrypts: one place.

:func:`nats_options` turns the ``CHECKOUT_NATS_*`` settings into :class:`NatsOptions`;
every connection (``bootstrap.connect_nats``, :class:`~orchestrator.client.CheckoutClient`,
the CLI through ``bootstrap``) hands ``NatsOptions.connect_kwargs()`` to nats-py, and the
FastStream broker of the command service gets the same as ``NatsOptions.broker_security()``
(FastStream's non-deprecated form of those arguments). The composition root calls
:func:`nats_options` and passes the result down; nothing here is global.

Guarantees:

* ``repr(NatsOptions)`` says which method is in use (``user=orchestrator``, ``token``,
  ``nkey``, ``creds``, ``tls``), never a password, token or seed; the secrets stay
  ``SecretStr`` until :meth:`NatsOptions.connect_kwargs` builds the call's arguments.
* A TLS file that is missing or unreadable is :class:`NatsTlsError` naming the setting and
  the path, raised when the options are built (before any connection is tried).
* :func:`connect` gives up at once when a server refuses the credentials or the TLS
  handshake fails (:class:`NatsRefused`); an unreachable server is still retried as the
  caller asks (``max_reconnect_attempts=-1``: until it is up). Without this, nats-py would
  retry a refused password forever.
* :func:`redact_url` removes ``user:password@`` / ``token@`` from a URL for messages.

Credentials given inside ``NATS_URL`` (``nats://user:pass@host``) still work (nats-py reads
them), but the settings are the documented way: they stay out of ``runtime.json`` and logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict
from urllib.parse import urlsplit, urlunsplit

from faststream.nats.security import (
    NatsCredentials,
    NatsNKey,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)
from nats.aio.client import Client as NatsClient
from nats.errors import AuthorizationError, StaleConnectionError, UnexpectedEOF
from nats.errors import Error as NatsError
from pydantic import SecretStr

from orchestrator.errors import StoreUnavailable
from orchestrator.settings import NatsSettingsError, Settings

__all__ = [
    "ANONYMOUS",
    "NatsConnectKwargs",
    "NatsOptions",
    "NatsRefused",
    "NatsTlsError",
    "connect",
    "nats_options",
    "redact_url",
]


class NatsTlsError(NatsSettingsError):
    """A TLS file of the NATS settings is missing or not a certificate/key (names the path)."""

    code = "invalid_nats_tls"


class NatsRefused(StoreUnavailable):
    """The server refused this client: wrong or missing credentials, or TLS failed."""

    code = "nats_refused"


class _Refused(Exception):
    pass


class NatsConnectKwargs(TypedDict, total=False):
    """The keyword arguments of ``nats.connect`` (and FastStream's ``NatsBroker``) we set."""

    user: str
    password: str
    token: str
    nkeys_seed: str
    user_credentials: str
    tls: ssl.SSLContext
    tls_hostname: str
    tls_handshake_first: bool


class _BrokerTls(TypedDict):
    ssl_context: ssl.SSLContext | None
    tls_hostname: str | None
    tls_handshake_first: bool


@dataclass(frozen=True, slots=True, repr=False)
class NatsOptions:
    """Credentials and TLS of a NATS connection; all unset is anonymous and plain text."""

    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    nkey_seed_file: Path | None = None
    creds_file: Path | None = None
    tls: ssl.SSLContext | None = None
    tls_hostname: str | None = None
    tls_handshake_first: bool = False
    """TLS before the server's INFO: a server that does not speak TLS (an impostor, or a
    misconfigured one) fails the handshake instead of receiving the credentials in clear"""

    def connect_kwargs(self) -> NatsConnectKwargs:
        kwargs = NatsConnectKwargs()
        if self.user is not None and self.password is not None:
            kwargs["user"] = self.user
            kwargs["password"] = self.password.get_secret_value()
        if self.token is not None:
            kwargs["token"] = self.token.get_secret_value()
        if self.nkey_seed_file is not None:
            kwargs["nkeys_seed"] = str(self.nkey_seed_file)
        if self.creds_file is not None:
            kwargs["user_credentials"] = str(self.creds_file)
        if self.tls is not None:
            kwargs["tls"] = self.tls
        if self.tls_hostname is not None:
            kwargs["tls_hostname"] = self.tls_hostname
        if self.tls_handshake_first:
            kwargs["tls_handshake_first"] = True
        return kwargs

    def broker_security(self) -> NatsSecurity | None:
        """The same options for FastStream's ``NatsBroker(security=...)``; None: anonymous."""
        tls = _BrokerTls(
            ssl_context=self.tls,
            tls_hostname=self.tls_hostname,
            tls_handshake_first=self.tls_handshake_first,
        )
        if self.user is not None and self.password is not None:
            return NatsUserPassword(self.user, self.password.get_secret_value(), **tls)
        if self.token is not None:
            return NatsToken(self.token.get_secret_value(), **tls)
        if self.nkey_seed_file is not None:
            return NatsNKey.from_file(self.nkey_seed_file, **tls)
        if self.creds_file is not None:
            return NatsCredentials.from_file(self.creds_file, **tls)
        if self.tls is not None or self.tls_hostname is not None:
            return NatsSecurity(**tls)
        return None

    def __repr__(self) -> str:
        parts = [
            label
            for label, used in (
                (f"user={self.user}", self.user is not None),
                ("token", self.token is not None),
                ("nkey", self.nkey_seed_file is not None),
                ("creds", self.creds_file is not None),
                ("tls", self.tls is not None),
            )
            if used
        ]
        return f"NatsOptions({', '.join(parts) or 'anonymous'})"


ANONYMOUS = NatsOptions()


def nats_options(settings: Settings) -> NatsOptions:
    """The connection options the settings ask for (TLS files are read now)."""
    tls = _tls_context(settings)
    return NatsOptions(
        user=settings.nats_user,
        password=settings.nats_password,
        token=settings.nats_token,
        nkey_seed_file=settings.nats_nkey_seed_file,
        creds_file=settings.nats_creds_file,
        tls=tls,
        tls_hostname=settings.nats_tls_hostname,
        tls_handshake_first=tls is not None and settings.nats_tls_handshake_first,
    )


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying client context when a CA or client certificate is set, else None.

    Without a CA file the system's trust store verifies the servers; a ``tls://`` URL
    without any of these settings gets nats-py's own default context.
    """
    ca, cert = settings.nats_tls_ca_file, settings.nats_tls_cert_file
    key = settings.nats_tls_key_file
    if ca is None and cert is None:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise NatsTlsError(f"CHECKOUT_NATS_TLS_CA_FILE {ca}: {exc.strerror or exc}") from None
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise NatsTlsError(
                f"CHECKOUT_NATS_TLS_CERT_FILE/_KEY_FILE {cert}, {key}: {exc.strerror or exc}"
            ) from None
    return context


def redact_url(url: str) -> str:
    """``url`` (one or a comma-separated list) without credentials in its user-info part."""
    return ",".join(_redact_one(part.strip()) for part in url.split(","))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable NATS URL>"
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


_log = logging.getLogger("orchestrator.nats")
_NO_TLS_FIRST = (
    "no TLS handshake within the connect timeout. We start TLS before the server's INFO "
    "(CHECKOUT_NATS_TLS_HANDSHAKE_FIRST): the server needs `handshake_first` in its tls "
    "block, or it is not a TLS server at all (it got no credentials)"
)
_CLOSE_TIMEOUT = 0.5
_CONNECTION_LOST = (OSError, UnexpectedEOF, StaleConnectionError)
_REFUSALS = ("authorization violation", "authentication", "user authentication expired")


def _is_refusal(exc: BaseException) -> bool:
    if isinstance(exc, AuthorizationError | ssl.SSLError):
        return True
    return isinstance(exc, NatsError) and any(r in str(exc).lower() for r in _REFUSALS)


async def connect(
    servers: Sequence[str],
    *,
    name: str,
    options: NatsOptions,
    connect_timeout: int = 5,
    max_reconnect_attempts: int = 60,
) -> NatsClient:
    """A connected nats-py client; :class:`NatsRefused` at once if the server refuses us.

    Other failures (``OSError``, ``nats.errors.Error``) propagate as nats-py raises them.
    """
    nc = NatsClient()
    state = {"connecting": True, "refused": False}

    async def on_error(exc: Exception) -> None:
        if state["refused"]:
            return  # the server hung up on us: closing the socket fails too
        # a TLS-first handshake that times out: the server greets in plain text (nats-py
        # would then hang closing the half-upgraded socket, see below)
        no_tls_first = options.tls_handshake_first and isinstance(exc, TimeoutError)
        if state["connecting"] and (no_tls_first or _is_refusal(exc)):
            raise _Refused(_NO_TLS_FIRST if no_tls_first else "") from exc  # leaves the loop
        if no_tls_first:
            _log.error(_NO_TLS_FIRST)
        if isinstance(exc, _CONNECTION_LOST):  # an outage: nats-py reconnects; no traceback
            _log.warning("nats: %s (%s); reconnecting", exc.__class__.__name__, exc)
            return
        _log.error("nats: %s", exc.__class__.__name__, exc_info=exc)

    try:
        await nc.connect(
            list(servers),
            name=name,
            error_cb=on_error,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=max_reconnect_attempts,
            **options.connect_kwargs(),
        )
    except _Refused as refused:
        state["refused"] = True
        # After a failed TLS handshake nats-py's close waits for a socket asyncio already
        # closed (the stream's protocol was swapped for TLS and never hears of it): bound it.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await nc.close()
        cause, hint = refused.__cause__, f" {refused}" if str(refused) else ""
        raise NatsRefused(f"NATS refused the connection ({options!r}): {cause!r}{hint}") from cause
    state["connecting"] = False
    return nc
