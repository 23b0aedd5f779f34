"""The main job: `checkout-orchestrator demo` runs on the embedded default and leaves
nothing running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(cmdline)
    return found


@pytest.mark.slow
def test_demo_runs_end_to_end_and_stops_everything(tmp_path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"NATS_URL", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"}
    }
    result = subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli import app; app()", "demo",
         "--sessions", "24", "--seed", "3"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "opened 24 checkout sessions" in out
    for title in ("routing decisions", "checkout sessions", "totals per provider", "trace"):
        assert title in out
    assert "checkout.provider.open" in out  # the trace of one checkout is shown
    assert _processes_mentioning("checkout-demo-") == []  # no server left behind
