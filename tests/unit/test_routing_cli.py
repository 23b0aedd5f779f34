"""``checkout-orchestrator route``: the decision and its explanation, without any server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.routing import load_rules

runner = CliRunner()

RULES = """
version = "cli-test"

[capabilities.stripe]
currencies = ["USD"]
modes = ["payment"]

[capabilities.polar]
currencies = ["USD"]
modes = ["payment"]

[[rules]]
name = "split"
providers = [{ provider = "stripe", weight = 0 }, { provider = "polar", weight = 1 }]
"""


@pytest.fixture(autouse=True)
def _no_rules_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHECKOUT_ROUTING_RULES_PATH", raising=False)


def test_xof_in_senegal_goes_to_lomi_and_says_why() -> None:
    result = runner.invoke(
        app, ["route", "--currency", "XOF", "--country", "SN", "--amount", "5000"]
    )

    assert result.exit_code == 0, result.output
    first_line, *rest = result.output.splitlines()
    assert first_line.endswith("→  lomi")
    assert "rule    xof" in rest
    assert f"rules   {load_rules().version_id}" in rest
    table = "\n".join(rest)
    assert "chosen" in table
    assert "fallback" in table
    assert "stripe" in table


def test_json_output_is_the_recorded_explanation() -> None:
    result = runner.invoke(
        app,
        [
            "route",
            "--currency",
            "usd",
            "--amount",
            "1999",
            "--metadata",
            "product_type=digital",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "rules_version": load_rules().version_id,
        "matched_rule": "digital-goods",
        "candidates": ["polar", "stripe"],
        "dropped": [],
    }


def test_setup_for_a_billing_customer_goes_to_kong() -> None:
    result = runner.invoke(
        app,
        [
            "route",
            "--currency",
            "EUR",
            "--mode",
            "setup",
            "--metadata",
            "billing_customer_id=c1",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["candidates"] == ["kong", "stripe"]


def test_an_unhealthy_provider_is_dropped_with_its_reason() -> None:
    result = runner.invoke(
        app,
        [
            "route",
            "--currency",
            "XOF",
            "--country",
            "SN",
            "--amount",
            "5000",
            "--unhealthy",
            "lomi",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    explanation = json.loads(result.output)
    assert explanation["candidates"] == ["stripe"]
    assert explanation["dropped"] == [{"provider": "lomi", "reason": "health: marked unavailable"}]


def test_no_route_prints_the_explanation_and_exits_1() -> None:
    result = runner.invoke(app, ["route", "--currency", "GBP", "--amount", "20", "--country", "GB"])

    assert result.exit_code == 1
    assert "→  none" in result.output
    assert "no_route" in result.output
    assert "below minimum 30" in result.output


def test_a_rules_file_given_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")

    result = runner.invoke(
        app, ["route", "--currency", "USD", "--amount", "100", "--rules", str(path), "--json"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["candidates"] == ["polar", "stripe"]


def test_the_rules_file_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES, encoding="utf-8")
    monkeypatch.setenv("CHECKOUT_ROUTING_RULES_PATH", str(path))

    result = runner.invoke(app, ["route", "--currency", "USD", "--amount", "100", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rules_version"].startswith("cli-test@")


def test_the_same_session_id_gets_the_same_weighted_choice(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES.replace("weight = 0", "weight = 1"), encoding="utf-8")
    arguments = ["route", "--currency", "USD", "--amount", "100", "--rules", str(path), "--json"]

    outputs = {
        runner.invoke(app, [*arguments, "--session-id", "cs_fixed"]).output for _ in range(3)
    }

    assert len(outputs) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--currency", "XXY"], "currency: unknown currency 'XXY'"),
        (["--currency", "USD", "--country", "Senegal"], "country: country must be an ISO"),
        (["--currency", "USD", "--metadata", "digital"], "metadata must be key=value"),
        (["--currency", "USD", "--amount", "-5"], "amount: Input should be greater than"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(arguments: list[str], message: str) -> None:
    result = runner.invoke(app, ["route", *arguments])

    assert result.exit_code == 2
    assert "invalid request" in result.output
    assert message in " ".join(result.output.split())


def test_a_broken_rules_file_exits_2_with_its_problems(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES.replace('"polar", weight', '"polr", weight'), encoding="utf-8")

    result = runner.invoke(app, ["route", "--currency", "USD", "--rules", str(path)])

    assert result.exit_code == 2
    assert "invalid_rules" in result.output
    assert "rules[0].providers[1].provider" in result.output
