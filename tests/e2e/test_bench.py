"""`python -m bench run` at a tiny scale: every scenario runs on the embedded
servers, beside its raw baseline and the peer, and the figures come out as a table,
JSON and a growth plot. The figures themselves are not judged here (speed is measured
by the benchmark, never asserted in a timed test); that they exist and are sane is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _environment() -> dict[str, str]:
    """The bench on its own embedded servers, run from the checkout, as from a shell that
    configures nothing (the suite's own KEK left out: the bench brings its own)."""
    configured = {"NATS_URL", "DATABASE_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"}
    configured |= {"CHECKOUT_PRIVACY_KEK", "CHECKOUT_PRIVACY_KEK_FILE"}
    environment = {key: value for key, value in os.environ.items() if key not in configured}
    environment["PYTHONPATH"] = str(ROOT)  # bench/ is the repository's, not an installed package
    return environment


@pytest.mark.slow
def test_bench_runs_every_scenario_and_writes_figures(tmp_path):
    environment = _environment()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run",
         "--sessions", "300", "--commands", "300", "--seconds", "1.5", "--rates", "200,400",
         "--concurrency", "32", "--growth-sizes", "500,3000", "--rebuild-sizes", "500,1500",
         "--json", str(tmp_path / "bench.json"), "--plot", str(tmp_path / "growth.png")],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((tmp_path / "bench.json").read_text())
    rows = {row["scenario"]: row for row in figures["rows"]}
    by_start = {name.split(",")[0].split(" (")[0]: row for name, row in rows.items()}
    assert {"append", "command path: create", "projection catch-up"} <= set(by_start)
    for row in figures["rows"]:
        assert row["ours"] > 0, row
    appends = [row for name, row in rows.items() if name.startswith("append")]
    assert len(appends) == 2
    assert all(row["raw"] > 0 and row["vs_raw"] > 0 for row in appends)
    catch_up = by_start["projection catch-up"]
    assert catch_up["raw"] > 0
    assert catch_up["peer"] > 0  # the eventsourcing library ran the same workload
    lag = next(row for name, row in rows.items() if name.startswith("projection lag p99 at 400"))
    assert lag["raw"] > 0  # the raw follower's lag beside ours
    assert figures["conditions"]["spans_exported_bytes"] > 0  # the lag runs traced
    assert any("memory of the projectors role" in name for name in rows)
    # CPU per command and per event of the worker processes, ours beside raw
    cpu = [row for name, row in rows.items() if name.strip().startswith("CPU per")]
    assert {"command", "event"} <= {row["scenario"].split()[2].rstrip(",") for row in cpu}
    assert all(row["raw"] > 0 for row in cpu if "command" in row["scenario"])
    assert any("command workers (up --workers" in name for name in rows)
    # creates on the production shape: a 3-node R3 cluster, raw atomic batches beside
    cluster = [row for name, row in rows.items() if name.startswith("cluster R3")]
    assert len(cluster) == 3
    assert all(row["raw"] > 0 for row in cluster[:2])
    assert any(name.strip().startswith("overhead p99 at 200/s") for name in rows)
    assert figures["conditions"]["cluster"].startswith("3 nodes")
    assert figures["conditions"]["nats_server"].startswith("2.")
    assert (tmp_path / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "python -m bench run" in result.stdout


@pytest.mark.slow
def test_bench_privacy_prints_clear_and_sealed_side_by_side(tmp_path):
    environment = _environment()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "privacy", "--sessions", "60", "--repeat", "1"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "projection catch-up" in result.stdout
    assert "sealed/clear" in result.stdout
