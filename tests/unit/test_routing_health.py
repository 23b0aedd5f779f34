"""Circuit breakers on a hand-driven clock: open, cool down, probe once, close or re-open."""

from __future__ import annotations

import pytest

from events.values import Provider
from orchestrator.routing import (
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    HealthBoard,
    RouteRequest,
    load_rules,
    route,
)

POLICY = BreakerPolicy(
    consecutive_failures=3,
    window_seconds=60,
    min_calls=10,
    failure_rate=0.5,
    cool_down_seconds=30,
    probe_timeout_seconds=10,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(at: float = 0.0) -> CircuitBreaker:
    breaker = CircuitBreaker(POLICY)
    for _ in range(3):
        breaker.record_failure(at)
    assert breaker.state(at) is BreakerState.OPEN
    return breaker


def test_a_new_breaker_is_closed_and_lets_calls_through() -> None:
    breaker = CircuitBreaker(POLICY)

    assert breaker.state(0) is BreakerState.CLOSED
    assert breaker.allow(0)
    assert breaker.allow(0)


def test_it_opens_after_n_consecutive_failures() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.record_failure(1)
    breaker.record_failure(2)

    assert breaker.state(2) is BreakerState.CLOSED
    breaker.record_failure(3)
    assert breaker.state(3) is BreakerState.OPEN
    assert not breaker.allow(3)


def test_a_success_breaks_the_streak() -> None:
    breaker = CircuitBreaker(POLICY)
    for second in range(3):  # F F S, three times: never 3 in a row, fewer than min_calls
        breaker.record_failure(second)
        breaker.record_failure(second)
        breaker.record_success(second)

    assert breaker.state(3) is BreakerState.CLOSED


def test_it_opens_on_the_failure_rate_within_the_window() -> None:
    breaker = CircuitBreaker(POLICY)
    for second in range(4):  # S F S F ...: never 3 in a row
        breaker.record_success(second)
        breaker.record_failure(second)
    breaker.record_success(4)
    assert breaker.state(4) is BreakerState.CLOSED  # 9 calls: fewer than min_calls

    breaker.record_failure(5)

    assert breaker.state(5) is BreakerState.OPEN  # 10 calls, 5 failures: 50 %


def test_the_rate_counts_only_the_window() -> None:
    breaker = CircuitBreaker(POLICY)
    for second in range(4):  # old failures, outside the window by the end
        breaker.record_failure(second)
        breaker.record_success(second)
    later = 100.0
    for _ in range(8):
        breaker.record_success(later)
    breaker.record_failure(later)
    breaker.record_success(later)

    assert breaker.state(later) is BreakerState.CLOSED  # 1 failure in 10 recent calls


def test_the_rate_waits_for_enough_calls() -> None:
    breaker = CircuitBreaker(POLICY)
    breaker.record_failure(0)
    breaker.record_failure(0)
    breaker.record_success(0)  # 2 of 3 failed, but 3 < min_calls

    assert breaker.state(0) is BreakerState.CLOSED


def test_it_half_opens_after_the_cool_down() -> None:
    breaker = opened(at=0)

    assert breaker.state(29.9) is BreakerState.OPEN
    assert not breaker.allow(29.9)
    assert breaker.state(30) is BreakerState.HALF_OPEN


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker = opened(at=0)

    assert breaker.allow(30)
    assert breaker.probing(31)
    assert not breaker.allow(31)
    assert not breaker.allow(39.9)


def test_a_probe_that_never_reports_frees_its_slot_after_the_probe_timeout() -> None:
    breaker = opened(at=0)
    assert breaker.allow(30)

    assert not breaker.probing(40)
    assert breaker.allow(40)


def test_a_successful_probe_closes_the_breaker() -> None:
    breaker = opened(at=0)
    assert breaker.allow(30)

    breaker.record_success(31)

    assert breaker.state(31) is BreakerState.CLOSED
    assert breaker.allow(31)
    breaker.record_failure(32)
    breaker.record_failure(32)
    assert breaker.state(32) is BreakerState.CLOSED  # the old streak was forgotten


def test_a_failed_probe_opens_it_for_another_cool_down() -> None:
    breaker = opened(at=0)
    assert breaker.allow(30)

    breaker.record_failure(31)

    assert breaker.state(31) is BreakerState.OPEN
    assert breaker.state(60.9) is BreakerState.OPEN
    assert breaker.state(61) is BreakerState.HALF_OPEN


def test_late_answers_while_open_change_nothing() -> None:
    breaker = opened(at=0)

    breaker.record_success(1)
    breaker.record_failure(29)

    assert breaker.state(30) is BreakerState.HALF_OPEN  # the cool-down counts from the opening


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("consecutive_failures", 0),
        ("window_seconds", 0),
        ("min_calls", 0),
        ("failure_rate", 1.5),
        ("cool_down_seconds", -1),
    ],
)
def test_a_policy_refuses_nonsense(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerPolicy.model_validate({field: value})


def test_the_board_keeps_one_breaker_per_provider_on_its_clock() -> None:
    clock = Clock()
    board = HealthBoard(clock, POLICY)
    for _ in range(3):
        board.record_failure(Provider.STRIPE)
    board.record_success(Provider.POLAR)

    view = board.view()

    assert view.states == {Provider.STRIPE: BreakerState.OPEN, Provider.POLAR: BreakerState.CLOSED}
    assert view.unavailable(Provider.STRIPE) == "health: circuit open"
    assert view.unavailable(Provider.POLAR) is None
    assert view.unavailable(Provider.LOMI) is None  # never seen: healthy
    assert not board.allow(Provider.STRIPE)
    assert board.allow(Provider.LOMI)


def test_the_router_reads_the_board_through_its_snapshot() -> None:
    clock = Clock()
    board = HealthBoard(clock, POLICY)
    rules = load_rules()
    request = RouteRequest(session_id="cs_1", currency="XOF", country="SN", amount=5000)
    for _ in range(3):
        board.record_failure(Provider.LOMI)

    assert route(rules, request, board.view()).provider is Provider.STRIPE

    clock.now += 30  # cooled down: half-open, the probe slot is free, lomi is a candidate again
    assert route(rules, request, board.view()).provider is Provider.LOMI
    assert board.allow(Provider.LOMI)  # the caller claims the probe before calling
    dropped = route(rules, request, board.view()).explanation.dropped
    assert [(d.provider, d.reason) for d in dropped] == [
        (Provider.LOMI, "health: circuit half-open, probe in flight")
    ]

    board.record_success(Provider.LOMI)
    assert route(rules, request, board.view()).explanation.dropped == ()


def test_a_snapshot_does_not_change_when_the_board_does() -> None:
    board = HealthBoard(Clock(), POLICY)
    before = board.view()
    for _ in range(3):
        board.record_failure(Provider.KONG)

    assert before.unavailable(Provider.KONG) is None
    assert board.view().unavailable(Provider.KONG) == "health: circuit open"


def test_recent_counts_the_calls_in_the_window_for_operators():
    now = [0.0]
    board = HealthBoard(lambda: now[0], BreakerPolicy(consecutive_failures=3, window_seconds=10))
    board.record_success(Provider.STRIPE)
    board.record_failure(Provider.STRIPE)
    assert board.recent(Provider.STRIPE) == (2, 1)
    assert board.recent(Provider.POLAR) == (0, 0)
    now[0] = 10.5
    assert board.recent(Provider.STRIPE) == (0, 0)
