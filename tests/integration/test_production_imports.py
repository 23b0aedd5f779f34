"""What the production roles load: never a simulator, the benchmark or a test helper.

Each role starts for real (``up --role R --once`` against the test run's NATS and Postgres)
in a fresh interpreter, which then lists the modules it imported. The sandbox may load
only with ``--sandbox`` (and ``demo``); ``bench/`` and ``tests/`` never."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

FORBIDDEN = ("bench", "tests", "orchestrator.sandbox")
PROBE = textwrap.dedent(
    """
    import json, sys
    from orchestrator.cli import app
    try:
        app(sys.argv[1:])
    except SystemExit as stop:
        if stop.code:
            raise
    print("MODULES " + json.dumps(sorted(sys.modules)))
    """
)


def _loaded(arguments: list[str], environment: dict[str, str]) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *arguments],
        env={**os.environ, **environment, "COLUMNS": "300"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES "))
    return list(json.loads(line.removeprefix("MODULES ")))


def _tooling(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN)]


def test_importing_the_cli_loads_no_tooling():
    assert _tooling(_loaded(["--help"], {})) == []


@pytest.mark.parametrize("role", ["commands", "projectors", "api"])
def test_a_production_role_loads_no_tooling(role, tmp_path, nats_url, database_url, stream_names):
    environment = {
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "CHECKOUT_DATA_DIR": str(tmp_path),
        "CHECKOUT_EVENTS_STREAM": stream_names.stream,
        "CHECKOUT_EVENTS_PREFIX": stream_names.events_prefix,
        "CHECKOUT_COMMANDS_STREAM": stream_names.commands_stream,
        "CHECKOUT_COMMANDS_PREFIX": stream_names.commands_prefix,
        "CHECKOUT_HTTP_PORT": "0",
    }
    modules = _loaded(["up", "--role", role, "--once"], environment)
    assert "orchestrator.bootstrap" in modules  # the role really started
    assert _tooling(modules) == []
