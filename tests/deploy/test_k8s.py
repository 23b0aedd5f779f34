"""deploy/k8s/: the same roles and settings as the compose file, checked without a cluster."""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.cli.serve import Role
from tests.support.deploy import (
    K8S,
    MIN_NATS,
    POSTGRES_PASSWORD_VARIABLE,
    check_nats_config,
    image_version,
    load_all_yaml,
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
from tests.support.tls import write_certificates

ROLES = {"commands": Role.COMMANDS, "projectors": Role.PROJECTORS, "api": Role.API}
IMAGE = "checkout-orchestrator"
NATS_PASSWORD_VARIABLE = "CHECKOUT_NATS_PASSWORD"  # noqa: S105 - a name, not a password
NATS_TLS_SECRET = "nats-tls"  # noqa: S105 - the Secret's name


@pytest.fixture(scope="module")
def resources() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all_yaml(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = doc
    return found


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    return resource["spec"]["template"]["spec"]["containers"]


def settings_data(resources) -> dict[str, str]:
    return resources["ConfigMap", "checkout-settings"]["data"]


def role_settings(resources, monkeypatch) -> Any:
    """The settings of a role's pod: the ConfigMap and the Secret's exported files."""
    secret = resources["Secret", "checkout-secrets"]["stringData"]
    environment = with_secret_variables(settings_data(resources), list(secret))
    return settings_from(environment, monkeypatch)


def secret_sources(volume: dict[str, Any]) -> dict[str, dict[str, str] | None]:
    """Secret name -> {key: file} (None: every key) of a secret or projected volume."""
    if "secret" in volume:
        sources = [{"name": volume["secret"]["secretName"], **volume["secret"]}]
    else:
        sources = [source["secret"] for source in volume["projected"]["sources"]]
    return {
        source["name"]: (
            {item["key"]: item["path"] for item in source["items"]} if "items" in source else None
        )
        for source in sources
    }


def test_kustomization_lists_every_manifest():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    assert kustomization["namespace"] == "checkout"
    assert [image["name"] for image in kustomization["images"]] == [IMAGE]


def test_each_role_is_a_deployment_running_the_real_cli(resources):
    for name, role in ROLES.items():
        deployment = resources["Deployment", f"checkout-{name}"]
        assert deployment["spec"]["replicas"] >= 2, name
        (container,) = containers(deployment)
        assert container["image"] == IMAGE
        command, params = parse_cli(container["args"])
        assert (command, params["role"], params["sandbox"]) == ("up", role, False), name
        assert deployment["spec"]["selector"]["matchLabels"].items() <= (
            deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_migrations_are_a_job(resources):
    job = resources["Job", "checkout-migrate"]
    (container,) = containers(job)
    assert parse_cli(container["args"]) == ("migrate", {})
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


def test_every_orchestrator_container_gets_the_settings_and_the_secrets(resources):
    for (kind, name), resource in resources.items():
        if kind not in {"Deployment", "Job"}:
            continue
        spec = resource["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert {"configMapRef": {"name": "checkout-settings"}} in container["envFrom"], name
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert mounts["secrets"] == "/run/secrets", name
        sources = secret_sources(volumes["secrets"])
        own = sources["checkout-secrets"]
        if own is not None:  # a selection: the NATS password is always in it
            assert own[NATS_PASSWORD_VARIABLE] == NATS_PASSWORD_VARIABLE, name
        if kind == "Deployment":  # the roles connect to NATS: its CA under the settings' name
            ca_file = PurePosixPath(settings_data(resources)["CHECKOUT_NATS_TLS_CA_FILE"])
            assert ca_file.parent == PurePosixPath("/run/secrets")
            assert sources[NATS_TLS_SECRET] == {"ca.crt": ca_file.name}, name
        assert mounts["data"] == settings_data(resources)["CHECKOUT_DATA_DIR"]
        extra = {e["name"]: e["value"] for e in container.get("env", [])}
        assert set(extra) == {"OTEL_SERVICE_NAME"}, name
        component = resource["metadata"]["labels"]["app.kubernetes.io/component"]
        assert extra["OTEL_SERVICE_NAME"] == f"checkout-{component}"


def test_settings_names_are_fields_of_the_settings_model(resources):
    known = settings_variables()
    assert "OTEL_SERVICE_NAME" in known
    for variable in settings_data(resources):
        assert variable in known, f"{variable} is no field of Settings"
    for variable in resources["Secret", "checkout-secrets"]["stringData"]:
        assert variable in known | {POSTGRES_PASSWORD_VARIABLE}, variable


def test_settings_are_those_of_a_3_replica_cluster(resources, monkeypatch):
    settings = role_settings(resources, monkeypatch)
    assert settings.stream_replicas == 3
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - in a pod, on purpose
    nats = resources["StatefulSet", "nats"]
    headless = nats["spec"]["serviceName"]
    servers = [urlsplit(url) for url in (settings.nats_url or "").split(",")]
    assert [(u.scheme, u.hostname, u.port) for u in servers] == [
        ("nats", f"nats-{i}.{headless}", 4222) for i in range(nats["spec"]["replicas"])
    ]
    database = urlsplit(settings.database_url or "")
    assert database.scheme == "postgresql"
    assert database.password is None, "the password is the PGPASSWORD secret"


def test_the_api_service_reaches_the_http_port(resources, monkeypatch):
    settings = role_settings(resources, monkeypatch)
    deployment = resources["Deployment", "checkout-api"]
    (container,) = containers(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == settings.http_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    service = resources["Service", "checkout-api"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    for name in ("commands", "projectors"):
        assert "ports" not in containers(resources["Deployment", f"checkout-{name}"])[0]


def test_nats_is_a_3_server_statefulset_on_2_12_or_newer(resources):
    nats = resources["StatefulSet", "nats"]
    spec = nats["spec"]
    assert spec["replicas"] == 3
    assert spec["podManagementPolicy"] == "Parallel"
    headless = resources["Service", spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    (container,) = containers(nats)
    assert image_version(container["image"]) >= MIN_NATS
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["data"] == "/data"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    disruption = resources["PodDisruptionBudget", "nats"]
    assert disruption["spec"]["maxUnavailable"] == 1


def test_nats_config_is_valid_clustered_jetstream_with_fsync_always(resources, tmp_path):
    text = resources["ConfigMap", "nats-config"]["data"]["nats.conf"]
    certs = write_certificates(tmp_path)
    checked = nats_config_for_check(
        text,
        {"/etc/nats-tls/tls.crt": certs.server_cert, "/etc/nats-tls/tls.key": certs.server_key},
    )
    check_nats_config(
        checked,
        environment={**os.environ, "POD_NAME": "nats-0", NATS_PASSWORD_VARIABLE: "pw"},
    )
    assert nats_setting(text, "server_name") == "$POD_NAME"
    blocks = nats_blocks(text)
    assert nats_setting(blocks["jetstream"], "sync_interval") == "always"
    assert nats_setting(blocks["jetstream"], "store_dir") == "/data"
    headless = resources["StatefulSet", "nats"]["spec"]["serviceName"]
    assert nats_routes(blocks["cluster"]) == [
        f"nats-route://nats-{i}.{headless}:6222" for i in range(3)
    ]


def test_helm_alternative_has_the_same_durability_and_names(resources):
    values = load_yaml(K8S / "helm" / "nats-values.yaml")
    config = values["config"]
    assert config["cluster"]["enabled"] is True
    assert config["cluster"]["replicas"] == resources["StatefulSet", "nats"]["spec"]["replicas"]
    assert config["jetstream"]["enabled"] is True
    assert config["jetstream"]["fileStore"]["enabled"] is True
    assert config["jetstream"]["merge"] == {"sync_interval": "always"}
    text = (K8S / "helm" / "nats-values.yaml").read_text(encoding="utf-8")
    assert "helm install nats " in text, "release 'nats': pods nats-0..2 behind nats-headless"


def test_nats_wants_tls_and_the_roles_password(resources, monkeypatch):
    text = resources["ConfigMap", "nats-config"]["data"]["nats.conf"]
    nats = resources["StatefulSet", "nats"]
    spec = nats["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == NATS_TLS_SECRET
    tls = nats_blocks(text)["tls"]
    for setting, key in (("cert_file", "tls.crt"), ("key_file", "tls.key")):
        assert nats_setting(tls, setting) == f"{mounts['tls']}/{key}"
    assert nats_setting(tls, "handshake_first") == "300ms"  # our clients start TLS first
    settings = role_settings(resources, monkeypatch)
    assert nats_authorization(text) == [
        {"user": settings.nats_user or "", "password": f"${NATS_PASSWORD_VARIABLE}"}
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env[NATS_PASSWORD_VARIABLE]["valueFrom"]["secretKeyRef"] == {
        "name": "checkout-secrets",
        "key": NATS_PASSWORD_VARIABLE,
    }
    assert NATS_PASSWORD_VARIABLE in resources["Secret", "checkout-secrets"]["stringData"]
    assert settings.nats_password is not None
    assert settings.nats_tls_ca_file is not None


def test_helm_alternative_has_the_same_tls_and_user(resources):
    values = load_yaml(K8S / "helm" / "nats-values.yaml")
    config = values["config"]
    assert config["nats"]["tls"] == {
        "enabled": True,
        "secretName": NATS_TLS_SECRET,
        "merge": {"handshake_first": "300ms"},
    }
    assert config["merge"]["authorization"]["users"] == [
        {"user": "checkout", "password": f"<< ${NATS_PASSWORD_VARIABLE} >>"}
    ]
    reference = values["container"]["env"][NATS_PASSWORD_VARIABLE]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "checkout-secrets", "key": NATS_PASSWORD_VARIABLE}
