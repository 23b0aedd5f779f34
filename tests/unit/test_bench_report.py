"""The benchmark's verdicts: ratios and targets are computed, never typed in."""

from __future__ import annotations

import json

import pytest

from bench.growth import linear_fit
from bench.report import Report, Row, Target


def test_a_throughput_meets_its_share_of_raw_only_when_it_reaches_it():
    assert Row("a", "events/s", 80, raw=100, target=Target(of_raw=0.8)).met is True
    assert Row("a", "events/s", 79, raw=100, target=Target(of_raw=0.8)).met is False


def test_a_latency_target_is_an_upper_bound():
    assert Row("p99", "ms", 14.9, better="lower", target=Target(absolute=15)).met is True
    assert Row("p99", "ms", 15.0, better="lower", target=Target(absolute=15)).met is False


def test_a_latency_share_of_raw_is_an_upper_bound_too():
    target = Target(absolute=25, of_raw=2)
    assert Row("lag", "ms", 20, raw=10, better="lower", target=target).met is True
    assert Row("lag", "ms", 21, raw=10, better="lower", target=target).met is False
    assert Row("lag", "ms", 26, raw=20, better="lower", target=target).met is False
    assert target.describe("ms", "lower") == "< 25 ms, ≤ 2x raw"


def test_every_part_of_a_target_must_hold():
    target = Target(absolute=25_000, of_peer=10)
    assert Row("c", "events/s", 30_000, peer=2_000, target=target).met is True
    assert Row("c", "events/s", 30_000, peer=3_500, target=target).met is False
    assert Row("c", "events/s", 20_000, peer=1_000, target=target).met is False


def test_no_target_or_no_baseline_gives_no_verdict():
    assert Row("m", "MiB", 80).met is None
    assert Row("a", "events/s", 80, target=Target(of_raw=0.8)).met is None


def test_the_json_carries_the_ratios_and_verdicts(tmp_path):
    report = Report("t", {"sync_interval": "always"})
    report.add(Row("a", "events/s", 50, raw=100, peer=10, target=Target(of_raw=0.8)))
    path = tmp_path / "b.json"
    report.write_json(path)
    (row,) = json.loads(path.read_text())["rows"]
    assert (row["vs_raw"], row["vs_peer"], row["met"]) == (0.5, 5.0, False)


def test_a_linear_fit_recovers_a_line():
    slope, intercept, r2 = linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert (slope, intercept) == pytest.approx((2, 1))
    assert r2 == pytest.approx(1)
