"""Shared by the deploy/ tests: the files, the settings' variable names, the CLI's parser."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import ipaddress
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import nats.js.errors
import typer.main
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nats.aio.client import Client

from orchestrator.cli import app
from orchestrator.embedded import find_nats_server
from orchestrator.errors import InfrastructureError
from orchestrator.jetstream.streams import StreamLayout, ensure_streams
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NATS_CONFIGS = DEPLOY / "nats"
STREAMS = NATS_CONFIGS / "streams"
MIN_NATS = (2, 12)
_NO_PEERS_FOR_PLACEMENT = 10005  # JetStream error: a cluster member is not known online yet

# Read by asyncpg (libpq's variable) when DATABASE_URL carries no password.
POSTGRES_PASSWORD_VARIABLE = "PGPASSWORD"  # noqa: S105 - a name, not a password


def settings_variables() -> set[str]:
    """Every environment variable `Settings` reads, from its fields (alias or prefix + name)."""
    prefix = str(Settings.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.add(f"{prefix}{name}".upper())
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:  # AliasChoices / AliasPath: not used today; make the test say so
            raise AssertionError(f"unexpected alias form on Settings.{name}: {alias!r}")
    return names


def settings_from(environment: dict[str, str], monkeypatch: Any) -> Settings:
    """`Settings()` as a process with exactly these variables (of ours) would build it."""
    import os

    for name in settings_variables():
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("CHECKOUT_"):
            monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return Settings()


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def parse_cli(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse a container's command line with the real CLI (nothing runs): subcommand, params."""
    group: Any = typer.main.get_command(app)  # a click-style group (typer vendors click)
    name, *rest = args
    command = group.commands[name]
    with command.make_context(name, rest) as ctx:
        return name, dict(ctx.params)


def image_version(image: str) -> tuple[int, int]:
    """(major, minor) of an image tag such as ``nats:2.15-alpine`` or ``postgres:18``."""
    match = re.fullmatch(r"[\w./-]+:(\d+)(?:\.(\d+))?(?:\.\d+)?(?:-[\w.]+)?", image)
    assert match, f"image {image!r} has no pinned version tag"
    return int(match[1]), int(match[2] or 0)


def check_nats_config(text: str, *, environment: dict[str, str] | None = None) -> str:
    """Validate a server config with the real nats-server (``-t``); return its verdict."""
    result = subprocess.run(
        [str(find_nats_server()), "-t", "-c", "/dev/stdin"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=environment,
    )
    verdict = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, verdict
    return verdict


def nats_blocks(text: str) -> dict[str, str]:
    """The top-level ``name { ... }`` blocks of a nats-server config (no nesting needed here)."""
    return {match[1]: match[2] for match in re.finditer(r"(?ms)^\s*(\w+)\s*\{(.*?)^\s*\}", text)}


def nats_setting(block: str, key: str) -> str | None:
    match = re.search(rf"(?m)^\s*{key}\s*[:=]\s*(\S+)\s*$", block)
    return match[1].strip("\"'") if match else None


def nats_routes(block: str) -> list[str]:
    match = re.search(r"(?s)routes\s*[:=]\s*\[(.*?)\]", block)
    assert match, "cluster block without routes"
    return re.findall(r"nats-route://[\w.-]+:\d+", match[1])


def load_script(path: Path) -> ModuleType:
    """Import a script from deploy/ by path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"deploy_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def ensure_streams_on_new_cluster(
    nc: Client, layout: StreamLayout, timeout: float = 20.0
) -> None:
    """`ensure_streams` on a cluster that just started: retried while JetStream elects its
    meta leader or does not yet know every peer online (R3 placement needs all three)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                await ensure_streams(nc, layout)
            except InfrastructureError:  # UnsupportedServer: "JetStream is not available"
                pass
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != _NO_PEERS_FOR_PLACEMENT:
                    raise
            else:
                return
            await asyncio.sleep(0.2)


@dataclass(frozen=True, slots=True)
class Certificates:
    """A throw-away CA, a server certificate for loopback and ``hosts``, a client certificate,
    and an unrelated CA (a client trusting only that one must refuse the server)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key_and_name(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pem(path: Path, item: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    if isinstance(item, x509.Certificate):
        path.write_bytes(item.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


def _ca(directory: Path, name: str) -> tuple[Path, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key, subject = _key_and_name(name)
    cert = _certificate(
        subject,
        key.public_key(),
        subject,
        key,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
        ],
    )
    return _write_pem(directory / f"{name}.crt", cert), cert, key


def write_certificates(directory: Path, hosts: tuple[str, ...] = ()) -> Certificates:
    """Generate the files of :class:`Certificates` in ``directory`` (``cryptography``)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_cert, ca_key = _ca(directory, "test-ca")
    other_ca_path, _, _ = _ca(directory, "other-ca")
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), *map(x509.DNSName, hosts)]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    server_key, server_name = _key_and_name("nats-server")
    server = _certificate(
        server_name,
        server_key.public_key(),
        ca_cert.subject,
        ca_key,
        [
            (x509.SubjectAlternativeName(names), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    client_key, client_name = _key_and_name("checkout-orchestrator")
    client = _certificate(
        client_name,
        client_key.public_key(),
        ca_cert.subject,
        ca_key,
        [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )
    return Certificates(
        ca=ca_path,
        server_cert=_write_pem(directory / "server.crt", server),
        server_key=_write_pem(directory / "server.key", server_key),
        client_cert=_write_pem(directory / "client.crt", client),
        client_key=_write_pem(directory / "client.key", client_key),
        other_ca=other_ca_path,
    )


def with_secret_variables(environment: dict[str, Any], secrets: list[str]) -> dict[str, str]:
    """A container's environment after the entry point exported its secret files: each
    mounted secret named like a variable is set (to a placeholder value)."""
    exported = {
        name: f"<{name} file>" for name in secrets if re.fullmatch(r"[A-Z_][A-Z0-9_]*", name)
    }
    return {**{k: str(v) for k, v in environment.items()}, **exported}


def nats_config_for_check(text: str, paths: dict[str, Path]) -> str:
    """A deploy NATS config with its certificate paths pointed at generated files, for
    ``check_nats_config`` (the real server opens them)."""
    for deployed, local in paths.items():
        assert deployed in text, f"{deployed} is not in the config"
        text = text.replace(deployed, str(local))
    return text


def nats_authorization(text: str) -> list[dict[str, str]]:
    """The users of a config's ``authorization { users: [ {user: .., password: ..} ] }``."""
    block = nats_blocks(text)["authorization"]
    return [
        dict(re.findall(r"(\w+)\s*:\s*([^,}\s]+)", entry))
        for entry in re.findall(r"\{([^{}]*)\}", block)
    ]
