"""The main job: `checkout-orchestrator demo` runs on the embedded default and leaves
nothing running."""

from __future__ import annotations

import os
import re
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


# A logging record in any format: "INFO:stripe:...", "2026-... WARNING name ...", the SDK's
# "message='Request to Stripe api'", a JSON log object.
_LOG_LINE = re.compile(
    r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]"
    r"|^\d{4}-\d\d-\d\d[ T][\d:,.]+ +(DEBUG|INFO|WARNING|ERROR)"
    r"|message='Request to Stripe|^\{\"time\"",
    re.MULTILINE,
)


@pytest.mark.slow
def test_demo_runs_end_to_end_and_stops_everything(tmp_path):
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"NATS_URL", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"}
    } | {"COLUMNS": "220"}  # one table row per line
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
    # only its own output: no library log line, no traceback, nothing on stderr
    assert result.stderr == ""
    assert _LOG_LINE.search(out) is None, _LOG_LINE.search(out)
    assert "Traceback" not in out
    # the Stripe outage outlasts the SDK's retries: the router's fallbacks show, with why
    fallback = re.search(r"^│ fallback .*│ stripe: (provider_\w+|health: \w+)", out, re.MULTILINE)
    assert fallback is not None, out
    assert _processes_mentioning("checkout-demo-") == []  # no server left behind
