"""NATS credentials and TLS: real nats-servers that demand them, and the project's own code.

Each server (started here, `orchestrator.embedded`) wants one thing: a password, a token, an
nkey, TLS with our CA (plus a password), or a client certificate (mutual TLS). A client
configured by the `CHECKOUT_NATS_*` settings creates a session end to end (command handler,
event store, client); a client without the right credentials or CA is refused at once
(`NatsRefused`), and the server's streams hold nothing new. No secret value shows up in a
log record, an error message or a repr.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.signing
import nkeys
import pytest
from faststream.nats.security import NatsSecurity
from nats.errors import Error as NatsError
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr, ValidationError

from orchestrator.bootstrap import connect_nats, orchestrator
from orchestrator.client import CheckoutClient
from orchestrator.embedded import EmbeddedNats, NatsServerAuth, NatsServerTls
from orchestrator.jetstream.connection import (
    NatsOptions,
    NatsRefused,
    NatsTlsError,
    connect,
    nats_options,
    redact_url,
)
from orchestrator.settings import NatsSettingsError, Settings
from orchestrator.telemetry import build_telemetry
from tests.support.apps import settings_for
from tests.support.builders import new_session_id
from tests.support.tls import Certificates, write_certificates

USER = "orchestrator"
PASSWORD = f"pw-{secrets.token_hex(12)}"
TOKEN = f"tok-{secrets.token_hex(12)}"
WRONG = f"wrong-{secrets.token_hex(12)}"
MODES = ("password", "token", "nkey", "creds", "tls", "mtls")


@dataclass(frozen=True)
class Protected:
    server: EmbeddedNats
    good: dict[str, Any]  # settings the server accepts

    @property
    def url(self) -> str:
        return self.server.url


@dataclass(frozen=True)
class Nkey:
    seed_file: Path
    public: str


def make_nkey(directory: Path, name: str) -> Nkey:
    seed = nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), nkeys.PREFIX_BYTE_USER)
    path = directory / f"{name}.nk"
    path.write_bytes(seed + b"\n")
    path.chmod(0o600)
    return Nkey(path, nkeys.from_seed(bytearray(seed)).public_key.decode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix: int) -> Any:
    seed = nkeys.encode_seed(bytes(nacl.signing.SigningKey.generate()), prefix)
    return nkeys.from_seed(bytearray(seed)), seed


def _jwt(issuer: Any, subject: str, name: str, nats_claims: dict[str, Any]) -> str:
    """A NATS JWT (v2) signed with the issuer's nkey."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "iss": issuer.public_key.decode(),
        "name": name,
        "sub": subject,
        "nats": {**nats_claims, "version": 2},
    }
    claims["jti"] = base64.b32encode(
        hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()
    ).decode()
    signing_input = ".".join(
        (
            _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode()),
            _b64(json.dumps(claims).encode()),
        )
    )
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


@dataclass(frozen=True)
class Operator:
    auth: NatsServerAuth
    creds_file: Path
    stranger_creds_file: Path  # a user signed by an account the server does not know


def make_operator(directory: Path) -> Operator:
    operator, _ = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1}
    limits = {
        **unlimited,
        "wildcards": True,
        "conn": -1,
        "leaf": -1,
        "mem_storage": -1,
        "disk_storage": -1,
        "streams": -1,
        "consumer": -1,
    }
    operator_pub = operator.public_key.decode()
    operator_jwt = _jwt(operator, operator_pub, "test-operator", {"type": "operator"})

    def account_and_user(name: str, *, jetstream: bool = True) -> tuple[str, str, Path]:
        account, _ = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
        account_pub = account.public_key.decode()
        claims = {"type": "account", "limits": limits if jetstream else unlimited}
        account_jwt = _jwt(operator, account_pub, name, claims)
        user, user_seed = _keypair(nkeys.PREFIX_BYTE_USER)
        user_claims = {"type": "user", "pub": {}, "sub": {}, **unlimited}
        user_jwt = _jwt(account, user.public_key.decode(), f"{name}-user", user_claims)
        path = directory / f"{name}.creds"
        path.write_text(
            "-----BEGIN NATS USER JWT-----\n"
            f"{user_jwt}\n"
            "------END NATS USER JWT------\n\n"
            "-----BEGIN USER NKEY SEED-----\n"
            f"{user_seed.decode()}\n"
            "------END USER NKEY SEED------\n",
            encoding="utf-8",
        )
        path.chmod(0o600)
        return account_pub, account_jwt, path

    account_pub, account_jwt, creds = account_and_user("checkout")
    system_pub, system_jwt, _ = account_and_user("SYS", jetstream=False)
    _, _, stranger = account_and_user("stranger")
    auth = NatsServerAuth(
        operator_jwt=operator_jwt,
        accounts=((account_pub, account_jwt), (system_pub, system_jwt)),
        system_account=system_pub,
    )
    return Operator(auth, creds, stranger)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nats-auth")


@pytest.fixture(scope="module")
def certs(base) -> Certificates:
    return write_certificates(base / "certs")


@pytest.fixture(scope="module")
def nkey(base) -> Nkey:
    return make_nkey(base, "user")


@pytest.fixture(scope="module")
def password_server(base):
    auth = NatsServerAuth(users=((USER, PASSWORD),))
    with EmbeddedNats(base / "password", auth=auth) as server:
        yield Protected(server, {"nats_user": USER, "nats_password": PASSWORD})


@pytest.fixture(scope="module")
def token_server(base):
    with EmbeddedNats(base / "token", auth=NatsServerAuth(token=TOKEN)) as server:
        yield Protected(server, {"nats_token": TOKEN})


@pytest.fixture(scope="module")
def nkey_server(base, nkey):
    with EmbeddedNats(base / "nkey", auth=NatsServerAuth(nkeys=(nkey.public,))) as server:
        yield Protected(server, {"nats_nkey_seed_file": nkey.seed_file})


@pytest.fixture(scope="module")
def operator(base) -> Operator:
    return make_operator(base)


@pytest.fixture(scope="module")
def creds_server(base, operator):
    with EmbeddedNats(base / "creds", auth=operator.auth) as server:
        yield Protected(server, {"nats_creds_file": operator.creds_file})


@pytest.fixture(scope="module")
def tls_server(base, certs):
    tls = NatsServerTls(certs.server_cert, certs.server_key)
    auth = NatsServerAuth(users=((USER, PASSWORD),))
    with EmbeddedNats(base / "tls", auth=auth, tls=tls) as server:
        good = {"nats_user": USER, "nats_password": PASSWORD, "nats_tls_ca_file": certs.ca}
        yield Protected(server, good)


@pytest.fixture(scope="module")
def mtls_server(base, certs):
    tls = NatsServerTls(certs.server_cert, certs.server_key, certs.ca, verify=True)
    with EmbeddedNats(base / "mtls", tls=tls) as server:
        good = {
            "nats_tls_ca_file": certs.ca,
            "nats_tls_cert_file": certs.client_cert,
            "nats_tls_key_file": certs.client_key,
        }
        yield Protected(server, good)


def protected(request, mode: str) -> Protected:
    server: Protected = request.getfixturevalue(f"{mode}_server")
    return server


async def stored_messages(server: Protected) -> int:
    """Messages in every stream of the server, seen by an authorised connection."""
    nc = await connect_nats(server.url, "auditor", nats_options(Settings(**server.good)))
    try:
        return sum(info.state.messages for info in await nc.jetstream().streams_info())
    finally:
        await nc.close()


# --- the right credentials: the real orchestrator and client work end to end ----------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_with_the_settings_credentials_creates_a_session(
    mode, request, stream_names
):
    server = protected(request, mode)
    settings = settings_for(stream_names, **server.good)
    sid = new_session_id()
    async with (
        orchestrator(settings, server.url),
        await CheckoutClient.connect(
            server.url, settings.layout(), options=nats_options(settings)
        ) as client,
    ):
        reply = await client.create_session(currency="EUR", amount=1200, session_id=sid)
        history = await client.history(sid)
    assert (reply.session_id, reply.appended) == (sid, 1)
    assert [recorded.sequence for recorded in history] == [reply.sequence]


# --- without them: refused at once, nothing stored -------------------------------------------


def bad_settings(
    mode: str, certs: Certificates, tmp_path: Path, operator: Operator
) -> dict[str, dict[str, Any]]:
    other = make_nkey(tmp_path, "intruder")
    with_password = {"nats_user": USER, "nats_password": PASSWORD}
    cases: dict[str, dict[str, dict[str, Any]]] = {
        "password": {
            "anonymous": {},
            "wrong password": {"nats_user": USER, "nats_password": WRONG},
            "unknown user": {"nats_user": "intruder", "nats_password": PASSWORD},
            "a token instead": {"nats_token": PASSWORD},
        },
        "token": {"anonymous": {}, "wrong token": {"nats_token": WRONG}},
        "nkey": {"anonymous": {}, "unknown nkey": {"nats_nkey_seed_file": other.seed_file}},
        "creds": {
            "anonymous": {},
            "unknown account": {"nats_creds_file": operator.stranger_creds_file},
            "an nkey instead": {"nats_nkey_seed_file": other.seed_file},
        },
        "tls": {
            "no CA (system trust)": with_password,
            "another CA": {**with_password, "nats_tls_ca_file": certs.other_ca},
            "our CA, no password": {"nats_tls_ca_file": certs.ca},
        },
        "mtls": {
            "no client certificate": {"nats_tls_ca_file": certs.ca},
            "no CA": {
                "nats_tls_cert_file": certs.client_cert,
                "nats_tls_key_file": certs.client_key,
            },
        },
    }
    return cases[mode]


@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_the_right_credentials_gets_nothing(
    mode, request, certs, tmp_path, operator, stream_names
):
    server = protected(request, mode)
    before = await stored_messages(server)
    for case, overrides in bad_settings(mode, certs, tmp_path, operator).items():
        settings = settings_for(stream_names, **overrides)
        with pytest.raises(NatsRefused):
            await connect_nats(server.url, "intruder", nats_options(settings))
        with pytest.raises(NatsRefused):
            await CheckoutClient.connect(server.url, options=nats_options(settings))
        with pytest.raises(NatsRefused):
            async with orchestrator(settings, server.url):
                pytest.fail(f"{mode}, {case}: the orchestrator started")
    assert await stored_messages(server) == before


class Impostor:
    """A plain-text "NATS server" at a known address: it greets like one (an INFO without
    ``tls_required``) and keeps whatever the client sends."""

    def __init__(self) -> None:
        self.received = bytearray()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._greet, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _greet(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        info = {"server_id": "impostor", "version": "2.15.1", "proto": 1, "auth_required": True}
        writer.write(b"INFO " + json.dumps(info).encode() + b"\r\n")
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            while chunk := await reader.read(65536):
                self.received += chunk
        writer.close()


async def test_with_tls_set_a_plain_text_impostor_never_gets_the_password(certs):
    """nats-py upgrades to TLS only when the server's INFO asks for it, so a client that
    reads INFO first sends its CONNECT (password included) in clear to a server that does
    not ask. With TLS configured, ours start TLS first: the impostor gets a ClientHello and
    nothing else. (Turning that off, the default of nats-py, leaks the password.)"""
    with_tls = {"nats_user": USER, "nats_password": PASSWORD, "nats_tls_ca_file": certs.ca}
    impostor = Impostor()
    async with impostor as url:
        settings = Settings(**with_tls)
        with pytest.raises(NatsRefused, match="handshake_first"):
            await connect([url], name="t", options=nats_options(settings), connect_timeout=1)
    assert impostor.received.startswith(b"\x16\x03"), bytes(impostor.received[:8])  # ClientHello
    assert PASSWORD.encode() not in impostor.received

    # what the setting prevents: INFO first, and the impostor reads the password
    impostor = Impostor()
    async with impostor as url:
        settings = Settings(**with_tls, nats_tls_handshake_first=False)
        with pytest.raises((NatsError, TimeoutError)):  # it never answers PONG
            await connect(
                [url], name="t", options=nats_options(settings), connect_timeout=1,
                max_reconnect_attempts=1,
            )  # fmt: skip
    assert PASSWORD.encode() in impostor.received


# --- secrets stay secret ---------------------------------------------------------------------


async def test_no_secret_in_logs_errors_or_reprs(
    password_server, token_server, stream_names, caplog
):
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    attempts = [
        (password_server, {"nats_user": USER, "nats_password": WRONG}),
        (token_server, {"nats_token": WRONG}),
        (password_server, {"nats_token": TOKEN}),
    ]
    for server, overrides in attempts:
        settings = settings_for(stream_names, **overrides)
        seen += [repr(settings), str(settings), repr(nats_options(settings))]
        with pytest.raises(NatsRefused) as refused:
            await connect_nats(server.url, "intruder", nats_options(settings))
        error: BaseException | None = refused.value
        while error is not None:
            seen += [str(error), repr(error)]
            error = error.__cause__ or error.__context__
    good = settings_for(stream_names, **password_server.good)
    exporter = InMemorySpanExporter()
    telemetry = build_telemetry(span_exporters=[exporter])
    try:
        async with (
            orchestrator(good, password_server.url, telemetry=telemetry),
            await CheckoutClient.connect(
                password_server.url, good.layout(), options=nats_options(good)
            ) as client,
        ):
            await client.create_session(currency="EUR", amount=100, session_id=new_session_id())
    finally:
        telemetry.shutdown()
    spans = exporter.get_finished_spans()
    assert spans
    seen += [f"{span.name} {dict(span.attributes or {})!r}" for span in spans]
    seen += [f"{e.name} {dict(e.attributes or {})!r}" for span in spans for e in span.events]
    conflicting = {"nats_user": USER, "nats_password": PASSWORD, "nats_token": TOKEN}
    with pytest.raises(ValidationError) as invalid:
        Settings(**conflicting)
    seen += [str(invalid.value), repr(invalid.value)]
    seen += [str(invalid.value.errors(include_input=False))]
    seen += [record.getMessage() for record in caplog.records]
    seen += [caplog.text]
    text = "\n".join(seen)
    assert "Authorization Violation" in text  # the refusals were seen and reported
    for secret in (PASSWORD, TOKEN, WRONG):
        assert secret not in text


# --- the settings: combinations, files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nats_user": USER, "nats_password": PASSWORD, "nats_token": TOKEN}, "choose one"),
        ({"nats_token": TOKEN, "nats_nkey_seed_file": "a.nk"}, "choose one"),
        ({"nats_nkey_seed_file": "a.nk", "nats_creds_file": "a.creds"}, "choose one"),
        ({"nats_password": PASSWORD}, "go together"),
        ({"nats_user": USER}, "go together"),
        ({"nats_tls_cert_file": "client.crt"}, "go together"),
        ({"nats_tls_key_file": "client.key"}, "go together"),
    ],
)
def test_contradicting_settings_are_a_typed_error_naming_settings_only(overrides, message):
    with pytest.raises(ValidationError) as invalid:
        Settings(**overrides)
    (error,) = invalid.value.errors()
    assert isinstance(error["ctx"]["error"], NatsSettingsError)
    assert message in str(invalid.value)
    assert PASSWORD not in str(invalid.value)
    assert TOKEN not in str(invalid.value)


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHECKOUT_NATS_USER", USER)
    monkeypatch.setenv("CHECKOUT_NATS_PASSWORD", PASSWORD)
    monkeypatch.setenv("CHECKOUT_NATS_TLS_CA_FILE", str(tmp_path / "ca.crt"))
    monkeypatch.setenv("CHECKOUT_NATS_TLS_HOSTNAME", "nats.internal")
    settings = Settings()
    assert settings.nats_user == USER
    assert settings.nats_password == SecretStr(PASSWORD)
    assert settings.nats_tls_hostname == "nats.internal"
    assert PASSWORD not in repr(settings)


def test_a_missing_tls_file_names_the_setting(tmp_path, certs):
    missing = tmp_path / "nope.crt"
    with pytest.raises(NatsTlsError, match="CHECKOUT_NATS_TLS_CA_FILE"):
        nats_options(Settings(nats_tls_ca_file=missing))
    with pytest.raises(NatsTlsError, match="CHECKOUT_NATS_TLS_CERT_FILE"):
        nats_options(
            Settings(
                nats_tls_ca_file=certs.ca, nats_tls_cert_file=missing, nats_tls_key_file=missing
            )
        )


def test_each_method_maps_to_nats_py_and_faststream(tmp_path, certs):
    creds = tmp_path / "user.creds"
    cases = {
        "password": ({"nats_user": USER, "nats_password": PASSWORD}, {"user", "password"}),
        "token": ({"nats_token": TOKEN}, {"token"}),
        "nkey": ({"nats_nkey_seed_file": tmp_path / "u.nk"}, {"nkeys_seed"}),
        "creds": ({"nats_creds_file": creds}, {"user_credentials"}),
        "tls": (
            {"nats_tls_ca_file": certs.ca, "nats_tls_hostname": "n"},
            {"tls", "tls_hostname", "tls_handshake_first"},
        ),
        "tls, INFO first": (
            {"nats_tls_ca_file": certs.ca, "nats_tls_handshake_first": False},
            {"tls"},
        ),
    }
    for name, (overrides, keys) in cases.items():
        options = nats_options(Settings(**overrides))
        assert set(options.connect_kwargs()) == keys, name
        assert options.broker_security() is not None, name
        assert PASSWORD not in repr(options)
    assert nats_options(Settings(nats_creds_file=creds)).connect_kwargs() == {
        "user_credentials": str(creds)
    }
    assert NatsOptions().connect_kwargs() == {}
    assert NatsOptions().broker_security() is None
    with_tls = nats_options(
        Settings(nats_user=USER, nats_password=PASSWORD, nats_tls_ca_file=certs.ca)
    )
    security = with_tls.broker_security()
    assert isinstance(security, NatsSecurity)
    assert security.tls_handshake_first  # the command service's broker starts TLS first too


def test_urls_are_redacted_in_messages():
    assert redact_url("nats://u:secret@h:4222,nats://tok@h2:4222,nats://h3:4222") == (
        "nats://***@h:4222,nats://***@h2:4222,nats://h3:4222"
    )


def test_the_embedded_servers_auth_hides_its_secrets_and_takes_one_kind():
    assert PASSWORD not in repr(NatsServerAuth(users=((USER, PASSWORD),)))
    assert TOKEN not in repr(NatsServerAuth(token=TOKEN))
    with pytest.raises(ValueError, match="one of"):
        NatsServerAuth(users=((USER, PASSWORD),), token=TOKEN)
    with pytest.raises(ValueError, match="one of"):
        NatsServerAuth()
