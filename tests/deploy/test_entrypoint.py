"""deploy/docker-entrypoint.sh (secret files -> environment) and deploy/secrets/init.sh."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.deploy import DEPLOY

SH = shutil.which("sh")
pytestmark = pytest.mark.skipif(SH is None, reason="no POSIX sh")


def run_entrypoint(tmp_path: Path, secrets: dict[str, str], **environment: str) -> list[str]:
    """Run the entry point with a fake CLI that prints its arguments and environment."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for name, value in secrets.items():
        (secrets_dir / name).write_text(value, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "checkout-orchestrator"
    fake.write_text('#!/bin/sh\necho "args: $*"\nenv\n', encoding="utf-8")
    fake.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SECRETS_DIR": str(secrets_dir),
        **environment,
    }
    result = subprocess.run(
        [str(SH), str(DEPLOY / "docker-entrypoint.sh"), "up", "--role", "api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.splitlines()


def test_non_empty_secret_files_become_variables(tmp_path):
    lines = run_entrypoint(
        tmp_path,
        {
            "STRIPE_API_KEY": "sk_test_123\n",
            "PGPASSWORD": "s3cret",
            "POLAR_ACCESS_TOKEN": "",
            "not-a-name": "x",
            "9LIVES": "x",
            "nats-ca.crt": "-----BEGIN CERTIFICATE-----",
        },
    )
    assert lines[0] == "args: up --role api"
    assert "STRIPE_API_KEY=sk_test_123" in lines  # the trailing newline is dropped
    assert "PGPASSWORD=s3cret" in lines
    assert not [line for line in lines if line.startswith("POLAR_ACCESS_TOKEN=")]
    assert not [line for line in lines if line.startswith(("not-a-name=", "9LIVES="))]
    assert not [line for line in lines if "BEGIN CERTIFICATE" in line]


def test_a_variable_already_set_wins_over_its_file(tmp_path):
    lines = run_entrypoint(tmp_path, {"STRIPE_API_KEY": "from-file"}, STRIPE_API_KEY="from-env")
    assert "STRIPE_API_KEY=from-env" in lines


@pytest.mark.skipif(shutil.which("openssl") is None, reason="init.sh needs openssl")
def test_init_creates_a_password_and_empty_provider_files_and_keeps_them(tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    shutil.copy(DEPLOY / "secrets" / "init.sh", secrets / "init.sh")
    subprocess.run([str(SH), str(secrets / "init.sh")], capture_output=True, check=True)
    password = (secrets / "PGPASSWORD").read_text(encoding="utf-8")
    assert len(password) == 32
    assert (secrets / "STRIPE_API_KEY").read_text(encoding="utf-8") == ""
    assert (secrets / "STRIPE_API_KEY").stat().st_mode & 0o777 == 0o644
    assert secrets.stat().st_mode & 0o777 == 0o700
    nats_password = (secrets / "CHECKOUT_NATS_PASSWORD").read_text(encoding="utf-8")
    assert len(nats_password) == 40
    assert nats_password.isalpha()  # nats-server reads it as a config value
    certificate = (secrets / "nats-server.crt").read_bytes()
    assert b"BEGIN CERTIFICATE" in (secrets / "nats-ca.crt").read_bytes()
    for key in ("nats-ca.key", "nats-server.key"):
        assert (secrets / key).stat().st_mode & 0o777 == 0o600, key
    (secrets / "STRIPE_API_KEY").write_text("sk_live_x", encoding="utf-8")
    subprocess.run([str(SH), str(secrets / "init.sh")], capture_output=True, check=True)
    assert (secrets / "PGPASSWORD").read_text(encoding="utf-8") == password
    assert (secrets / "CHECKOUT_NATS_PASSWORD").read_text(encoding="utf-8") == nats_password
    assert (secrets / "nats-server.crt").read_bytes() == certificate
    assert (secrets / "STRIPE_API_KEY").read_text(encoding="utf-8") == "sk_live_x"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="init.sh needs openssl")
def test_init_issues_a_server_certificate_for_the_three_nats_names(tmp_path):
    from cryptography import x509

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    shutil.copy(DEPLOY / "secrets" / "init.sh", secrets / "init.sh")
    subprocess.run([str(SH), str(secrets / "init.sh")], capture_output=True, check=True)
    server = x509.load_pem_x509_certificate((secrets / "nats-server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((secrets / "nats-ca.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"nats-1", "nats-2", "nats-3", "localhost"} <= set(
        names.get_values_for_type(x509.DNSName)
    )
