"""Provider health: one circuit breaker per provider, and the read-only view the router uses.

A breaker is closed (calls go through), open (calls are skipped) or half-open (one
probe call goes through). It opens after ``consecutive_failures`` failures in a row, or
when at least ``min_calls`` outcomes within the last ``window_seconds`` show a failure
rate of ``failure_rate`` or more; after ``cool_down_seconds`` it is half-open; the probe's
success closes it, its failure re-opens it for another cool-down. A probe that never
reports frees its slot after ``probe_timeout_seconds``.

Time is always handed in: `CircuitBreaker` takes ``now`` (seconds on a monotonic scale)
on every call and `HealthBoard` reads an injected clock, so tests drive time by hand.
Not thread-safe: one event loop owns a board.

Route, then before calling a candidate ask ``board.allow(provider)`` (it claims the
half-open probe) and report the outcome with ``record_success`` / ``record_failure``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from pydantic import Field

from events.values import Provider, Value

__all__ = [
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "HealthBoard",
    "HealthSnapshot",
]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class BreakerPolicy(Value):
    consecutive_failures: int = Field(default=5, ge=1)
    window_seconds: float = Field(default=60.0, gt=0)
    min_calls: int = Field(default=20, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    cool_down_seconds: float = Field(default=30.0, gt=0)
    probe_timeout_seconds: float = Field(default=30.0, gt=0)


class CircuitBreaker:
    """The breaker of one provider. Every method takes the current time."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_at: float | None = None
        self._streak = 0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed) in the window

    def state(self, now: float) -> BreakerState:
        self._cool(now)
        return self._state

    def probing(self, now: float) -> bool:
        """Whether a half-open breaker's probe is out and has not timed out."""
        return (
            self.state(now) is BreakerState.HALF_OPEN
            and self._probe_at is not None
            and now - self._probe_at < self.policy.probe_timeout_seconds
        )

    def allow(self, now: float) -> bool:
        """May a call go through now? In half-open this claims the single probe."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self.probing(now):
            return False
        self._probe_at = now
        return True

    def record_success(self, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._close()
        elif state is BreakerState.CLOSED:
            self._streak = 0
            self._remember(now, failed=False)
        # Open: a late answer to a call admitted before the breaker opened proves nothing.

    def record_failure(self, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._open(now)
        elif state is BreakerState.CLOSED:
            self._streak += 1
            self._remember(now, failed=True)
            if self._tripped():
                self._open(now)

    def recent(self, now: float) -> tuple[int, int]:
        """(calls, failures) the breaker counts now: those in the last ``window_seconds``
        while closed (an open or half-open breaker counts none; closing forgets them)."""
        while self._outcomes and self._outcomes[0][0] <= now - self.policy.window_seconds:
            self._outcomes.popleft()
        return len(self._outcomes), sum(failed for _, failed in self._outcomes)

    def _tripped(self) -> bool:
        if self._streak >= self.policy.consecutive_failures:
            return True
        calls = len(self._outcomes)
        failures = sum(failed for _, failed in self._outcomes)
        return calls >= self.policy.min_calls and failures / calls >= self.policy.failure_rate

    def _remember(self, now: float, *, failed: bool) -> None:
        self._outcomes.append((now, failed))
        while self._outcomes and self._outcomes[0][0] <= now - self.policy.window_seconds:
            self._outcomes.popleft()

    def _cool(self, now: float) -> None:
        cooled = now - self._opened_at >= self.policy.cool_down_seconds
        if self._state is BreakerState.OPEN and cooled:
            self._state = BreakerState.HALF_OPEN
            self._probe_at = None

    def _open(self, now: float) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probe_at = None

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._probe_at = None
        self._streak = 0
        self._outcomes.clear()


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """Breaker states at one instant: the `HealthView` the pure router reads."""

    states: Mapping[Provider, BreakerState] = field(default_factory=dict)
    probing: frozenset[Provider] = frozenset()

    def unavailable(self, provider: Provider) -> str | None:
        state = self.states.get(provider, BreakerState.CLOSED)
        if state is BreakerState.OPEN:
            return "health: circuit open"
        if provider in self.probing:
            return "health: circuit half-open, probe in flight"
        return None


class HealthBoard:
    """A breaker per provider, on an injected clock (``time.monotonic`` in production)."""

    def __init__(self, clock: Callable[[], float], policy: BreakerPolicy | None = None) -> None:
        self._clock = clock
        self._policy = policy or BreakerPolicy()
        self._breakers: dict[Provider, CircuitBreaker] = {}

    def breaker(self, provider: Provider) -> CircuitBreaker:
        if provider not in self._breakers:
            self._breakers[provider] = CircuitBreaker(self._policy)
        return self._breakers[provider]

    def allow(self, provider: Provider) -> bool:
        return self.breaker(provider).allow(self._clock())

    def record_success(self, provider: Provider) -> None:
        self.breaker(provider).record_success(self._clock())

    def record_failure(self, provider: Provider) -> None:
        self.breaker(provider).record_failure(self._clock())

    def recent(self, provider: Provider) -> tuple[int, int]:
        """(calls, failures) of ``provider`` in its breaker's window (for operators)."""
        return self.breaker(provider).recent(self._clock())

    def view(self) -> HealthSnapshot:
        now = self._clock()
        return HealthSnapshot(
            states=MappingProxyType(
                {name: breaker.state(now) for name, breaker in self._breakers.items()}
            ),
            probing=frozenset(
                name for name, breaker in self._breakers.items() if breaker.probing(now)
            ),
        )
