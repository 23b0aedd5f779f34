"""deploy/docker-compose.yml, its NATS configs and image, checked without Docker.

Docker does not run here: the compose file is parsed and held against the code it deploys
(the settings' variables, the CLI's roles, the real nats-server's config check).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.bootstrap import connect_nats
from orchestrator.cli.serve import Role
from orchestrator.embedded import EmbeddedNats, NatsServerAuth, NatsServerTls
from orchestrator.jetstream.connection import NatsRefused, nats_options
from tests.support.deploy import (
    DEPLOY,
    MIN_NATS,
    NATS_CONFIGS,
    POSTGRES_PASSWORD_VARIABLE,
    check_nats_config,
    image_version,
    load_yaml,
    nats_authorization,
    nats_blocks,
    nats_config_for_check,
    nats_routes,
    nats_setting,
    parse_cli,
    settings_from,
    settings_variables,
    with_secret_variables,
)
from tests.support.tls import Certificates, write_certificates

NATS_NODES = ("nats-1", "nats-2", "nats-3")
ROLES = {"commands": Role.COMMANDS, "projectors": Role.PROJECTORS, "api": Role.API}
NATS_PASSWORD_VARIABLE = "CHECKOUT_NATS_PASSWORD"  # noqa: S105 - a name, not a password
NATS_SERVER_FILES = {"nats-server.crt", "nats-server.key"}
NATS_CA_FILE = "nats-ca.crt"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load_yaml(DEPLOY / "docker-compose.yml")
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def orchestrator_services(services) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image", "").startswith("checkout-")}


def published(service: dict[str, Any]) -> dict[int, str]:
    """container port -> host side ("127.0.0.1:4222", "8080-8081"), from the short syntax."""
    ports: dict[int, str] = {}
    for entry in service.get("ports", []):
        host, _, container = str(entry).rpartition(":")
        ports[int(container.split("/")[0])] = host
    return ports


def role_settings(service: dict[str, Any], monkeypatch) -> Any:
    """The settings a role's container builds: its environment and its exported secrets."""
    return settings_from(
        with_secret_variables(service["environment"], service.get("secrets", [])), monkeypatch
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certificates:
    return write_certificates(tmp_path_factory.mktemp("certs"), hosts=NATS_NODES)


def test_every_part_is_a_service(services):
    expected = {
        *NATS_NODES,
        "postgres",
        "migrate",
        "commands",
        "projectors",
        "api",
        "otel-collector",
        "jaeger",
    }
    assert expected <= set(services)
    assert set(orchestrator_services(services)) == {"migrate", "commands", "projectors", "api"}


def test_the_roles_run_the_real_cli_and_scale_apart(services):
    for name, role in ROLES.items():
        command, params = parse_cli(services[name]["command"])
        assert (command, params["role"], params["sandbox"]) == ("up", role, False), name
        assert services[name]["deploy"]["replicas"] >= 2, name
    assert parse_cli(services["migrate"]["command"]) == ("migrate", {})
    assert services["migrate"]["restart"] == "no"


def test_roles_wait_for_the_cluster_postgres_and_migrations(services):
    for name in ROLES:
        depends = services[name]["depends_on"]
        for node in NATS_NODES:
            assert depends[node]["condition"] == "service_healthy", (name, node)
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_nats_nodes_run_2_12_or_newer_with_their_own_config_and_volume(services, compose):
    for node in NATS_NODES:
        service = services[node]
        assert image_version(service["image"]) >= MIN_NATS
        assert service["image"].startswith("nats:")
        mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
        assert mounts["/etc/nats/nats.conf"] == f"./nats/{node}.conf"
        assert mounts["/data"] in compose["volumes"], "JetStream store on a named volume"
        assert {4222, 8222} <= set(published(service))
        assert set(service["secrets"]) == {NATS_PASSWORD_VARIABLE, *NATS_SERVER_FILES}
        assert "/healthz" in " ".join(service["healthcheck"]["test"])


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh")
def test_nats_servers_start_with_the_password_from_the_secret_file(services, tmp_path):
    """The command exports the secret file as the variable the config reads, then execs."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / NATS_PASSWORD_VARIABLE).write_text("fromTheSecretFile\n", encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nats-server"
    fake.write_text('#!/bin/sh\necho "args: $*"\nenv\n', encoding="utf-8")
    fake.chmod(0o755)
    for node in NATS_NODES:
        shell, flag, script = services[node]["command"]
        assert (shell, flag) == ("sh", "-c")
        script = script.replace("$$", "$").replace("/run/secrets", str(secrets))
        result = subprocess.run(
            [shell, flag, script],
            env={"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        lines = result.stdout.splitlines()
        assert lines[0] == "args: --config /etc/nats/nats.conf"
        assert f"{NATS_PASSWORD_VARIABLE}=fromTheSecretFile" in lines


@pytest.mark.parametrize("node", NATS_NODES)
def test_each_nats_config_is_valid_clustered_jetstream_with_fsync_always(node, certs):
    text = (NATS_CONFIGS / f"{node}.conf").read_text(encoding="utf-8")
    checked = nats_config_for_check(
        text,
        {
            "/run/secrets/nats-server.crt": certs.server_cert,
            "/run/secrets/nats-server.key": certs.server_key,
        },
    )
    # the real nats-server refuses unknown fields and bad values, and opens the certificate
    check_nats_config(checked, environment={**os.environ, NATS_PASSWORD_VARIABLE: "pw"})
    assert nats_setting(text, "server_name") == node
    assert nats_setting(text, "listen") == "0.0.0.0:4222"
    blocks = nats_blocks(text)
    jetstream, cluster = blocks["jetstream"], blocks["cluster"]
    assert nats_setting(jetstream, "sync_interval") == "always"
    assert nats_setting(jetstream, "store_dir") == "/data"
    assert nats_setting(cluster, "name") == "checkout"
    assert nats_setting(cluster, "listen") == "0.0.0.0:6222"
    assert nats_routes(cluster) == [f"nats-route://{n}:6222" for n in NATS_NODES]


@pytest.mark.parametrize("node", NATS_NODES)
def test_nats_wants_tls_and_the_roles_password(node, services, monkeypatch):
    text = (NATS_CONFIGS / f"{node}.conf").read_text(encoding="utf-8")
    tls = nats_blocks(text)["tls"]
    mounted = {f"/run/secrets/{name}" for name in services[node]["secrets"]}
    assert nats_setting(tls, "cert_file") in mounted
    assert nats_setting(tls, "key_file") in mounted
    assert nats_setting(tls, "handshake_first") == "300ms"  # our clients start TLS first
    assert nats_authorization(text) == [
        {"user": "checkout", "password": f"${NATS_PASSWORD_VARIABLE}"}
    ]
    for name, service in orchestrator_services(services).items():
        settings = role_settings(service, monkeypatch)
        assert settings.nats_user == "checkout", name
        assert settings.nats_password is not None, name
        assert NATS_PASSWORD_VARIABLE in service["secrets"], name
        if name != "migrate":  # migrate never connects to NATS
            assert str(settings.nats_tls_ca_file) == f"/run/secrets/{NATS_CA_FILE}", name
            assert NATS_CA_FILE in service["secrets"], name


def test_the_three_nats_configs_differ_only_in_the_server_name():
    def without_name(node: str) -> str:
        text = (NATS_CONFIGS / f"{node}.conf").read_text(encoding="utf-8")
        text = text.replace(f"# {node}: ", "# NODE: ", 1)
        return text.replace(f"server_name: {node}\n", "server_name: NODE\n", 1)

    assert len({without_name(node) for node in NATS_NODES}) == 1


def test_environment_names_are_fields_of_the_settings_model(services):
    known = settings_variables()
    for name, service in orchestrator_services(services).items():
        for variable in service["environment"]:
            assert variable in known, f"{name}: {variable} is no field of Settings"


def test_environment_builds_the_settings_of_a_3_replica_cluster(services, monkeypatch):
    for name, service in orchestrator_services(services).items():
        settings = role_settings(service, monkeypatch)
        assert settings.stream_replicas == 3, name
        assert settings.layout().replicas == 3
        assert settings.http_host == "0.0.0.0"  # noqa: S104 - in a container, on purpose
        assert settings.http_port == 8080
        servers = [urlsplit(url) for url in (settings.nats_url or "").split(",")]
        assert [(u.scheme, u.hostname, u.port) for u in servers] == [
            ("nats", node, 4222) for node in NATS_NODES
        ]


def test_database_url_points_at_the_postgres_service(services, monkeypatch):
    postgres = services["postgres"]
    assert image_version(postgres["image"]) >= (18, 0)
    for name, service in orchestrator_services(services).items():
        settings = role_settings(service, monkeypatch)
        url = urlsplit(settings.database_url or "")
        assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432), name
        assert url.username == postgres["environment"]["POSTGRES_USER"]
        assert url.path == f"/{postgres['environment']['POSTGRES_DB']}"
        assert url.password is None, "the password is a secret (PGPASSWORD), not in the URL"
        assert POSTGRES_PASSWORD_VARIABLE in service["secrets"], name
    password_file = postgres["environment"]["POSTGRES_PASSWORD_FILE"]
    assert password_file == f"/run/secrets/{POSTGRES_PASSWORD_VARIABLE}"


def test_secrets_are_files_named_after_settings_variables(compose, services):
    known = settings_variables() | {POSTGRES_PASSWORD_VARIABLE}
    declared = compose["secrets"]
    tls_files = {*NATS_SERVER_FILES, NATS_CA_FILE}
    for name, secret in declared.items():
        assert name in known | tls_files, f"secret {name} is no variable the orchestrator reads"
        assert secret["file"] == f"./secrets/{name}"
    init = (DEPLOY / "secrets" / "init.sh").read_text(encoding="utf-8")
    for name in declared:
        assert name in init, f"secrets/init.sh does not create {name}"
    for name in ("commands", "api"):
        assert set(services[name]["secrets"]) == set(declared) - NATS_SERVER_FILES, name
    assert set(services["projectors"]["secrets"]) == {
        POSTGRES_PASSWORD_VARIABLE,
        NATS_PASSWORD_VARIABLE,
        NATS_CA_FILE,
        "CHECKOUT_PRIVACY_KEK",  # the projectors open sealed customers (docs/privacy.md)
    }
    for name in orchestrator_services(services):  # the servers' private key stays theirs
        assert not NATS_SERVER_FILES & set(services[name]["secrets"]), name


def test_api_port_and_health(services, monkeypatch):
    api = services["api"]
    settings = role_settings(api, monkeypatch)
    host = published(api)[settings.http_port]
    low, high = (int(port) for port in host.split("-"))
    assert high - low + 1 >= api["deploy"]["replicas"], "one host port per replica"
    assert f":{settings.http_port}/healthz" in " ".join(api["healthcheck"]["test"])
    for name in ("commands", "projectors", "migrate"):
        assert not published(services[name]), f"{name} serves nothing"


def test_tracing_goes_through_the_collector_to_jaeger(services, monkeypatch):
    collector = services["otel-collector"]
    config = load_yaml(DEPLOY / "otel-collector.yaml")
    endpoints = {
        int(spec["endpoint"].rsplit(":", 1)[1])
        for spec in config["receivers"]["otlp"]["protocols"].values()
    }
    assert endpoints == {4317, 4318}
    assert endpoints <= set(published(collector))
    for name, service in orchestrator_services(services).items():
        settings = role_settings(service, monkeypatch)
        assert settings.otel_service_name == f"checkout-{name}"
        url = urlsplit(settings.otel_exporter_otlp_endpoint or "")  # OTLP/HTTP base URL
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "http",
            "otel-collector",
            4318,
            "",
        ), name
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == pipelines["metrics"]["receivers"] == ["otlp"]
    (traces,) = pipelines["traces"]["exporters"]
    assert config["exporters"][traces]["endpoint"] == "jaeger:4317"
    (metrics,) = pipelines["metrics"]["exporters"]
    prometheus_port = int(config["exporters"][metrics]["endpoint"].rsplit(":", 1)[1])
    assert prometheus_port in published(collector)
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")
    assert 16686 in published(services["jaeger"])


def test_the_image_is_built_from_the_packages_with_the_entrypoint():
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    for package in ("events", "orchestrator", "projections"):
        assert re.search(rf"(?m)^COPY {package}/ {package}/$", dockerfile), package
    assert 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' in dockerfile
    assert re.search(r"(?m)^USER checkout$", dockerfile)
    cmd = re.search(r"(?m)^CMD (\[.*\])$", dockerfile)
    assert cmd is not None
    assert parse_cli(json.loads(cmd[1]))[0] == "up"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "deploy/secrets"} <= set(ignored)


@pytest.fixture
def init_secrets(tmp_path):
    """The secret files deploy/secrets/init.sh creates, in a directory of their own."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    shutil.copy(DEPLOY / "secrets" / "init.sh", secrets / "init.sh")
    subprocess.run(["sh", str(secrets / "init.sh")], capture_output=True, check=True)
    return secrets


@pytest.mark.skipif(shutil.which("openssl") is None, reason="init.sh needs openssl")
async def test_what_init_creates_lets_the_roles_in_and_nobody_else(
    services, init_secrets, tmp_path, monkeypatch
):
    """init.sh's password and certificate on a server authorising like the deploy configs;
    a role's settings (its compose environment, /run/secrets as init.sh wrote it) get in."""
    secrets = init_secrets
    password = (secrets / NATS_PASSWORD_VARIABLE).read_text(encoding="utf-8")
    (user,) = nats_authorization((NATS_CONFIGS / "nats-1.conf").read_text(encoding="utf-8"))
    auth = NatsServerAuth(users=((user["user"], password),))
    tls = NatsServerTls(secrets / "nats-server.crt", secrets / "nats-server.key")
    environment = {
        name: str(value).replace("/run/secrets", str(secrets))
        for name, value in services["commands"]["environment"].items()
    }
    with EmbeddedNats(tmp_path / "nats", auth=auth, tls=tls) as server:
        role = settings_from({**environment, NATS_PASSWORD_VARIABLE: password}, monkeypatch)
        nc = await connect_nats(server.url, "deploy-test", nats_options(role))
        assert nc.connected_url is not None
        await nc.close()
        stranger = settings_from(
            {k: v for k, v in environment.items() if not k.startswith("CHECKOUT_NATS_")},
            monkeypatch,
        )
        with pytest.raises(NatsRefused):  # no CA: the server's certificate is not trusted
            await connect_nats(server.url, "deploy-test", nats_options(stranger))
        no_password = settings_from(
            {k: v for k, v in environment.items() if k != "CHECKOUT_NATS_USER"}, monkeypatch
        )
        with pytest.raises(NatsRefused):  # TLS is fine, but no user: Authorization Violation
            await connect_nats(server.url, "deploy-test", nats_options(no_password))
