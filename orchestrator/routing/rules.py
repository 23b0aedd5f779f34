"""The routing rules file: a validated, hashable description of where checkouts go.

Owns the rules *data* and its loading. A rules file (TOML) has a ``version`` label,
named ``regions`` (sets of countries), each provider's ``capabilities`` and an ordered
list of ``rules``. Loading guarantees:

- every provider a rule names has capabilities, every region a rule names is defined,
  amount ranges and limits are ordered and non-negative, rule names are unique and a
  catch-all rule (no conditions) can only be the last one;
- any fault is one `InvalidRules` whose message names the file and the place;
- ``RoutingRules.version_id`` is ``"<label>@<hash>"``, the hash being the first 12 hex
  digits of the sha256 of the parsed rules' canonical JSON: two files that parse to the
  same rules share it, whatever their layout and comments.

The engine (`orchestrator.routing.engine`) reads these models; nothing here routes.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from enum import Enum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from events.money import CurrencyCode
from events.values import CountryCode, Mode, Provider, Value
from orchestrator.errors import CheckoutError
from orchestrator.providers.base import Capabilities

__all__ = [
    "DEFAULT_RULES_FILE",
    "AmountRange",
    "InvalidRules",
    "Match",
    "ProviderChoice",
    "RoutingRules",
    "Rule",
    "load_rules",
    "parse_rules",
]

DEFAULT_RULES_FILE = "default_rules.toml"
"""The rules shipped in this package, used when settings name no file."""

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
RegionName = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,31}$")]


class InvalidRules(CheckoutError):
    """The rules file cannot be read or does not describe a usable set of rules."""

    code = "invalid_rules"

    def __init__(self, source: str, problems: list[str]) -> None:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid routing rules in {source}:\n{listed}", source=source)
        self.source = source
        self.problems = problems


class AmountRange(Value):
    """Inclusive bounds in minor units of the request's currency."""

    min: int = Field(ge=0)
    max: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_pair(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if len(value) != 2:
                raise ValueError(f"an amount range is [min, max], got {list(value)}")
            return {"min": value[0], "max": value[1]}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> AmountRange:
        if self.min > self.max:
            raise ValueError(f"amount range [{self.min}, {self.max}]: min exceeds max")
        return self

    def __contains__(self, amount: object) -> bool:
        return isinstance(amount, int) and self.min <= amount <= self.max


class Match(Value):
    """Conditions on a checkout, all optional and AND-ed; none at all matches everything.

    ``countries`` and ``regions`` form one location condition: the customer's country is
    listed or lies in one of the regions. An unknown country or amount matches no
    location or amount condition.
    """

    currencies: frozenset[CurrencyCode] | None = None
    countries: frozenset[CountryCode] | None = None
    regions: frozenset[RegionName] | None = None
    amount: AmountRange | None = None
    modes: frozenset[Mode] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    metadata_present: frozenset[str] = frozenset()

    @field_validator("currencies", "countries", "regions", "modes")
    @classmethod
    def _not_empty(cls, value: frozenset[Any] | None) -> frozenset[Any] | None:
        if value is not None and not value:
            raise ValueError("an empty list matches nothing; leave the condition out instead")
        return value

    @model_validator(mode="after")
    def _amount_in_one_unit(self) -> Match:
        # Minor units of different currencies are not comparable (5000 XOF is not 5000 cents).
        if self.amount is not None and self.currencies is None:
            raise ValueError("an amount range needs a currencies condition: minor units differ")
        return self

    @property
    def is_catch_all(self) -> bool:
        return self == Match()


class ProviderChoice(Value):
    provider: Provider
    weight: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"provider": value} if isinstance(value, str) else value


class Rule(Value):
    """A named match and the providers to try, best first.

    With weights, a stable hash of the session id picks the first provider in
    proportion to them (weight 0: fallback only); the others follow in listed order.
    """

    name: str = Field(pattern=_NAME)
    match: Match = Match()
    providers: tuple[ProviderChoice, ...] = Field(min_length=1)

    @field_validator("providers")
    @classmethod
    def _providers(cls, value: tuple[ProviderChoice, ...]) -> tuple[ProviderChoice, ...]:
        names = [choice.provider for choice in value]
        repeated = sorted({name.value for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"provider listed twice: {', '.join(repeated)}")
        weighted = [choice.weight is not None for choice in value]
        if any(weighted) and not all(weighted):
            raise ValueError("give every provider a weight, or none (0 = fallback only)")
        if all(weighted) and sum(choice.weight or 0 for choice in value) == 0:
            raise ValueError("weights sum to 0: at least one must be positive")
        return value

    @property
    def weighted(self) -> bool:
        return self.providers[0].weight is not None


def _capabilities_consistent(provider: Provider, caps: Capabilities) -> list[str]:
    problems: list[str] = []
    if not caps.currencies:
        problems.append(f"capabilities.{provider.value}: no currencies")
    if not caps.modes:
        problems.append(f"capabilities.{provider.value}: no modes")
    for limits in (caps.min_amount, caps.max_amount):
        problems.extend(
            f"capabilities.{provider.value}: amount limit for {code}, which it does not take"
            for code in sorted(set(limits) - caps.currencies)
        )
    for code, low in caps.min_amount.items():
        high = caps.max_amount.get(code)
        if low < 0 or (high is not None and low > high):
            problems.append(
                f"capabilities.{provider.value}: {code} limits [{low}, {high}] are not ordered"
            )
    problems.extend(
        f"capabilities.{provider.value}: {code} maximum {high} is negative"
        for code, high in caps.max_amount.items()
        if high < 0
    )
    return problems


class RoutingRules(Value):
    version: str = Field(pattern=_NAME)
    regions: dict[RegionName, frozenset[CountryCode]] = Field(default_factory=dict)
    capabilities: dict[Provider, Capabilities]
    rules: tuple[Rule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self) -> RoutingRules:
        problems: list[str] = []
        for provider, caps in self.capabilities.items():
            problems.extend(_capabilities_consistent(provider, caps))
        seen: set[str] = set()
        for index, rule in enumerate(self.rules):
            where = f"rule {rule.name!r}"
            if rule.name in seen:
                problems.append(f"{where}: name used twice")
            seen.add(rule.name)
            problems.extend(
                f"{where}: provider {name} has no [capabilities.{name}]"
                for name in (choice.provider.value for choice in rule.providers)
                if name not in self.capabilities
            )
            unknown = sorted((rule.match.regions or frozenset()) - set(self.regions))
            if unknown:
                defined = ", ".join(sorted(self.regions)) or "none"
                problems.append(
                    f"{where}: unknown region {', '.join(unknown)} (defined: {defined})"
                )
            if rule.match.is_catch_all and index != len(self.rules) - 1:
                problems.append(f"{where} matches everything, so the rules after it never match")
        if problems:
            # One line per problem: `_problems` splits them back into a list.
            raise ValueError("\n".join(problems))
        return self

    @cached_property
    def digest(self) -> str:
        """First 12 hex digits of the sha256 of the canonical JSON of these rules."""
        text = json.dumps(
            _canonical(self.model_dump()),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def version_id(self) -> str:
        """What the routing explanation records: ``"<label>@<digest>"``."""
        return f"{self.version}@{self.digest}"


def _canonical(value: Any) -> Any:
    """JSON-ready data with sets sorted, so the hash does not depend on iteration order."""
    if isinstance(value, Mapping):
        return {str(_canonical(key)): _canonical(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_canonical(item) for item in value)
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return _canonical(value.model_dump())
    return value


def _where(loc: tuple[int | str, ...]) -> str:
    """``("rules", 2, "match", "amount")`` -> ``"rules[2].match.amount"``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else part
    return text


def _problems(error: ValidationError) -> list[str]:
    problems: list[str] = []
    for item in error.errors(include_url=False):
        where = _where(item["loc"])
        lines = item["msg"].removeprefix("Value error, ").splitlines()
        problems.extend(f"{where}: {line}" if where else line for line in lines)
    return problems


def parse_rules(text: str, *, source: str = "<string>") -> RoutingRules:
    """Parse and validate the TOML text of a rules file; `InvalidRules` says what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRules(source, [f"not valid TOML: {exc}"]) from None
    try:
        return RoutingRules.model_validate(data)
    except ValidationError as exc:
        raise InvalidRules(source, _problems(exc)) from None


def load_rules(path: Path | None = None) -> RoutingRules:
    """The rules at ``path``, or the packaged default rules when it is ``None``."""
    if path is None:
        resource = resources.files(__package__ or "orchestrator.routing") / DEFAULT_RULES_FILE
        return parse_rules(resource.read_text(encoding="utf-8"), source=DEFAULT_RULES_FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidRules(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    return parse_rules(text, source=str(path))
