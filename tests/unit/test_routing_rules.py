"""The rules file: parsing, every validation fault with a clear message, the version hash."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from events.values import Mode, Provider
from orchestrator.routing import InvalidRules, RoutingRules, load_rules, parse_rules

VALID = """
version = "test-1"

[regions]
WAEMU = ["BJ", "BF", "CI", "GW", "ML", "NE", "SN", "TG"]

[capabilities.stripe]
currencies = ["USD", "XOF"]
modes = ["payment", "setup"]
min_amount = { USD = 50 }
max_amount = { USD = 99999999 }

[capabilities.lomi]
currencies = ["XOF"]
modes = ["payment"]

[[rules]]
name = "west-africa"
providers = ["lomi", "stripe"]
[rules.match]
regions = ["WAEMU"]
currencies = ["xof"]
amount = [100, 1000000]

[[rules]]
name = "split"
providers = [{ provider = "stripe", weight = 3 }, { provider = "lomi", weight = 1 }]
[rules.match]
metadata = { product_type = "digital" }
metadata_present = ["campaign"]

[[rules]]
name = "default"
providers = ["stripe"]
"""


def test_a_valid_file_parses_into_typed_rules() -> None:
    rules = parse_rules(VALID)

    assert rules.version == "test-1"
    assert rules.regions["WAEMU"] == frozenset({"BJ", "BF", "CI", "GW", "ML", "NE", "SN", "TG"})
    assert rules.capabilities[Provider.STRIPE].modes == {Mode.PAYMENT, Mode.SETUP}
    assert rules.capabilities[Provider.STRIPE].min_amount == {"USD": 50}
    first, split, default = rules.rules
    assert first.match.currencies == {"XOF"}  # normalised to upper case
    assert first.match.amount is not None
    assert (first.match.amount.min, first.match.amount.max) == (100, 1_000_000)
    assert [choice.provider for choice in first.providers] == [Provider.LOMI, Provider.STRIPE]
    assert not first.weighted
    assert split.weighted
    assert [choice.weight for choice in split.providers] == [3, 1]
    assert split.match.metadata_present == {"campaign"}
    assert default.match.is_catch_all


def test_version_id_is_the_label_and_12_hex_digits_of_the_canonical_hash() -> None:
    rules = parse_rules(VALID)

    assert re.fullmatch(r"test-1@[0-9a-f]{12}", rules.version_id)
    assert rules.version_id.endswith(rules.digest)


def test_the_hash_ignores_layout_comments_and_set_order() -> None:
    reshuffled = (
        VALID.replace(
            '["BJ", "BF", "CI", "GW", "ML", "NE", "SN", "TG"]',
            '["tg", "SN", "NE", "ML", "GW", "CI", "BF", "BJ"]',
        )
        .replace('modes = ["payment", "setup"]', 'modes = ["setup", "payment"]  # same set')
        .replace("[[rules]]", "\n# a comment\n[[rules]]")
    )

    assert reshuffled != VALID
    assert parse_rules(reshuffled).digest == parse_rules(VALID).digest


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("weight = 3", "weight = 4"),
        ('version = "test-1"', 'version = "test-2"'),
        ("min_amount = { USD = 50 }", "min_amount = { USD = 60 }"),
        ('providers = ["lomi", "stripe"]', 'providers = ["stripe", "lomi"]'),
    ],
)
def test_any_change_of_meaning_changes_the_hash(before: str, after: str) -> None:
    assert before in VALID
    assert parse_rules(VALID.replace(before, after)).digest != parse_rules(VALID).digest


def test_a_rules_file_is_read_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(VALID, encoding="utf-8")

    assert load_rules(path) == parse_rules(VALID)


def test_a_missing_file_is_an_invalid_rules_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidRules, match="cannot read the file") as caught:
        load_rules(tmp_path / "absent.toml")

    assert caught.value.source == str(tmp_path / "absent.toml")
    assert caught.value.code == "invalid_rules"


def test_the_packaged_default_rules_load() -> None:
    rules = load_rules()

    assert isinstance(rules, RoutingRules)
    assert re.fullmatch(r"default-2026-11@[0-9a-f]{12}", rules.version_id)
    assert rules.rules[-1].match.is_catch_all
    assert set(rules.regions) >= {"EU", "EEA", "WAEMU"}
    assert len(rules.regions["EU"]) == 27


def _invalid(text: str) -> str:
    with pytest.raises(InvalidRules) as caught:
        parse_rules(text, source="rules.toml")
    assert str(caught.value).startswith("invalid routing rules in rules.toml:")
    return "\n".join(caught.value.problems)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        pytest.param(
            'providers = ["stripe"]',
            'providers = ["strpe"]',
            "rules[2].providers[0].provider: Input should be 'stripe', 'polar', 'lomi' or 'kong'",
            id="unknown provider",
        ),
        pytest.param(
            "[capabilities.lomi]",
            "[capabilities.lomy]",
            "capabilities.lomy: Input should be 'stripe', 'polar', 'lomi' or 'kong'",
            id="unknown provider in capabilities",
        ),
        pytest.param(
            'providers = ["stripe"]',
            'providers = ["kong"]',
            "rule 'default': provider kong has no [capabilities.kong]",
            id="provider without capabilities",
        ),
        pytest.param(
            'regions = ["WAEMU"]',
            'regions = ["WAMEU"]',
            "rule 'west-africa': unknown region WAMEU (defined: WAEMU)",
            id="unknown region",
        ),
        pytest.param(
            "amount = [100, 1000000]",
            "amount = [1000, 100]",
            "rules[0].match.amount: amount range [1000, 100]: min exceeds max",
            id="range upside down",
        ),
        pytest.param(
            "amount = [100, 1000000]",
            "amount = [-1, 100]",
            "rules[0].match.amount.min: Input should be greater than or equal to 0",
            id="negative range",
        ),
        pytest.param(
            "amount = [100, 1000000]",
            "amount = [100]",
            "an amount range is [min, max], got [100]",
            id="range not a pair",
        ),
        pytest.param(
            'currencies = ["xof"]',
            "",
            "an amount range needs a currencies condition",
            id="range without a currency",
        ),
        pytest.param(
            'currencies = ["xof"]',
            'currencies = ["XOFF"]',
            "rules[0].match.currencies[0]: currency must be a three-letter ISO 4217 code",
            id="bad currency",
        ),
        pytest.param(
            'regions = ["WAEMU"]',
            "regions = []",
            "rules[0].match.regions: an empty list matches nothing",
            id="empty condition",
        ),
        pytest.param(
            'regions = ["WAEMU"]',
            'region = ["WAEMU"]',
            "rules[0].match.region: Extra inputs are not permitted",
            id="misspelt condition",
        ),
        pytest.param(
            'name = "split"',
            'name = "default"',
            "rule 'default': name used twice",
            id="duplicate rule name",
        ),
        pytest.param(
            'providers = ["lomi", "stripe"]',
            'providers = ["lomi", "lomi"]',
            "rules[0].providers: provider listed twice: lomi",
            id="provider twice",
        ),
        pytest.param(
            '{ provider = "lomi", weight = 1 }',
            '"lomi"',
            "give every provider a weight, or none",
            id="some weights missing",
        ),
        pytest.param(
            'weight = 3 }, { provider = "lomi", weight = 1 }',
            'weight = 0 }, { provider = "lomi", weight = 0 }',
            "weights sum to 0",
            id="zero weights",
        ),
        pytest.param(
            "weight = 3",
            "weight = -3",
            "Input should be greater than or equal to 0",
            id="negative weight",
        ),
        pytest.param(
            "min_amount = { USD = 50 }",
            "min_amount = { USD = 50, EUR = 50 }",
            "capabilities.stripe: amount limit for EUR, which it does not take",
            id="limit for a currency not taken",
        ),
        pytest.param(
            "min_amount = { USD = 50 }",
            "min_amount = { USD = 999999999 }",
            "capabilities.stripe: USD limits [999999999, 99999999] are not ordered",
            id="limits upside down",
        ),
        pytest.param(
            'version = "test-1"',
            'version = ""',
            "version: String should match pattern",
            id="empty version",
        ),
        pytest.param(
            '[[rules]]\nname = "split"',
            '[[rules]]\nname = "early-catch-all"\nproviders = ["stripe"]\n'
            '[[rules]]\nname = "split"',
            "rule 'early-catch-all' matches everything, so the rules after it never match",
            id="catch-all not last",
        ),
        pytest.param(
            'version = "test-1"',
            'version = "test-1',
            "not valid TOML",
            id="broken TOML",
        ),
    ],
)
def test_each_fault_is_reported_clearly(before: str, after: str, expected: str) -> None:
    assert before in VALID
    assert expected in _invalid(VALID.replace(before, after, 1))


def test_every_fault_of_a_file_is_listed_at_once() -> None:
    text = VALID.replace('regions = ["WAEMU"]', 'regions = ["NOPE"]').replace(
        'providers = ["stripe"]', 'providers = ["kong"]'
    )

    problems = _invalid(text).splitlines()

    assert problems == [
        "rule 'west-africa': unknown region NOPE (defined: WAEMU)",
        "rule 'default': provider kong has no [capabilities.kong]",
    ]


def test_rules_can_be_built_in_code_too() -> None:
    data: dict[str, Any] = {
        "version": "code",
        "capabilities": {"stripe": {"currencies": ["USD"], "modes": ["payment"]}},
        "rules": [{"name": "all", "providers": ["stripe"]}],
    }

    rules = RoutingRules.model_validate(data)

    assert rules.rules[0].providers[0].provider is Provider.STRIPE
    assert RoutingRules.model_validate(rules.model_dump()) == rules


def test_the_example_in_the_routing_docs_is_a_valid_rules_file() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "routing.md"
    example = re.search(r"```toml\n(.*?)```", docs.read_text(encoding="utf-8"), re.DOTALL)

    assert example is not None
    rules = parse_rules(example.group(1), source="docs/routing.md")
    assert [rule.name for rule in rules.rules] == ["west-africa", "default"]
