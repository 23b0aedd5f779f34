"""Throw-away TLS material for NATS tests: a CA, server and client certificates
(``cryptography``), and an unrelated CA a careful client must refuse."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certificates", "write_certificates"]


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
