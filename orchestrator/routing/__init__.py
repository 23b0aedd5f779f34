"""Routing: which provider opens a checkout, as data plus a pure function.

- `rules`: the rules file (TOML, pydantic-validated, hashed) and its loading.
- `engine`: ``route(rules, request, health) -> RoutingDecision`` (pure), or `NoRoute`.
- `health`: a circuit breaker per provider on an injected clock; its snapshot is the
  health view the router reads.

Errors (both in the one tree of `orchestrator.errors`, rooted at `CheckoutError`):

    NoRoute        no_route        no rule matched, or every candidate was dropped
    InvalidRules   invalid_rules   the rules file is unreadable or inconsistent
"""

from orchestrator.errors import NoRoute
from orchestrator.routing.engine import (
    ALL_HEALTHY,
    Health,
    HealthView,
    RouteRequest,
    RoutingDecision,
    route,
)
from orchestrator.routing.health import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    HealthBoard,
    HealthSnapshot,
)
from orchestrator.routing.rules import (
    InvalidRules,
    Match,
    ProviderChoice,
    RoutingRules,
    Rule,
    load_rules,
    parse_rules,
)

__all__ = [
    "ALL_HEALTHY",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "Health",
    "HealthBoard",
    "HealthSnapshot",
    "HealthView",
    "InvalidRules",
    "Match",
    "NoRoute",
    "ProviderChoice",
    "RouteRequest",
    "RoutingDecision",
    "RoutingRules",
    "Rule",
    "load_rules",
    "parse_rules",
    "route",
]
