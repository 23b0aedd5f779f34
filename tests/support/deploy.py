"""The deployment under test: deploy/'s files, the settings' variable names, the CLI's parser,
nats-server config checks with the real binary."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import typer.main
import yaml

from orchestrator.cli import app
from orchestrator.embedded import find_nats_server
from orchestrator.settings import Settings

ROOT = Path(__file__).resolve().parents[2]  # tests/support/deploy.py -> the repository
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NATS_CONFIGS = DEPLOY / "nats"
STREAMS = NATS_CONFIGS / "streams"
MIN_NATS = (2, 12)

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
