"""Properties of the decider over random command sequences (Hypothesis).

Random sequences of valid commands of every type, for one session, go through
``decide`` then ``evolve``; a command the decider rejects with a typed error is
skipped. Whatever the order, the session must stay consistent:

(a) every reached state is a legal `State`; only typed rejections are raised;
(b) once terminal, the outcome never changes (a late provider session id may still
    be filled in on a completed session; nothing else moves);
(c) the requested amount never changes after creation;
(d) folding the emitted events from scratch gives the same state;
(e) a rejected command emits nothing and is rejected again the same way;
(f) repeating a command that just took effect (a redelivered webhook) emits nothing,
    for every command whose effect is a state rather than a step.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.catalog import CheckoutEvent, RoutingExplanation
from events.values import Amounts, LineItem, Mode, PaymentStatus, Provider, ProviderReferences
from orchestrator.domain import decider
from orchestrator.domain.commands import (
    CancelCheckoutSession,
    Command,
    CompleteCheckoutSession,
    CreateCheckoutSession,
    ExpireCheckoutSession,
    MarkProcessing,
    RecordAsyncPaymentResult,
    RecordProviderCallFailed,
    RecordProviderSessionOpened,
    RecordRouting,
)
from orchestrator.domain.state import (
    Absent,
    Canceled,
    Completed,
    Expired,
    Failed,
    Opened,
    Processing,
    Requested,
    Routed,
    State,
    is_terminal,
)
from orchestrator.errors import (
    CheckoutError,
    IllegalTransition,
    InvalidCommand,
    SessionAlreadyExists,
    SessionNotFound,
)

SID = "cs_prop_1"
AT = datetime(2026, 11, 21, 12, tzinfo=UTC)
LEGAL_STATES = (Absent, Requested, Routed, Opened, Processing, Completed, Failed, Expired, Canceled)
REJECTIONS = (SessionNotFound, SessionAlreadyExists, IllegalTransition, InvalidCommand)
IDEMPOTENT = frozenset(
    {
        "record_provider_session_opened",
        "mark_processing",
        "complete",
        "record_async_payment_result",
        "expire",
        "cancel",
    }
)
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

providers = st.sampled_from(list(Provider))
currencies = st.sampled_from(["USD", "EUR", "XOF", "KWD"])
explanations = st.builds(
    RoutingExplanation,
    rules_version=st.just("2026-11-21.1"),
    matched_rule=st.sampled_from([None, "default", "xof-west-africa"]),
    candidates=st.lists(providers, min_size=1, max_size=3, unique=True).map(tuple),
)
amounts = st.builds(
    Amounts,
    currency=currencies,
    subtotal=st.none() | st.integers(0, 10**6),
    total=st.none() | st.integers(0, 10**6),
)
line_items = st.builds(
    LineItem,
    name=st.sampled_from(["T-shirt", "Mug", "Frais de livraison"]),
    quantity=st.integers(1, 5),
    unit_amount=st.integers(0, 10**5),
)


# Strategies are built once, at import: building them per draw costs more than drawing.
modes = st.sampled_from(list(Mode))
item_lists = st.lists(line_items, max_size=3).map(tuple)
expiry_minutes = st.none() | st.integers(30, 24 * 60)
metadatas = st.dictionaries(st.sampled_from(["order", "cart"]), st.just("1"))


@st.composite
def _creates(draw: st.DrawFn) -> CreateCheckoutSession:
    mode = draw(modes)
    fields: dict[str, Any] = {"session_id": SID, "at": AT, "mode": mode}
    fields["currency"] = draw(currencies)
    if mode is not Mode.SETUP:
        items = draw(item_lists)
        total = sum(item.total for item in items)
        if total == 0:  # no items, or only free ones: price it with an amount
            fields["amount"] = draw(st.integers(1, 10**7))
        else:
            fields["line_items"] = items
            fields["amount"] = draw(st.sampled_from([None, total]))
    minutes = draw(expiry_minutes)
    if minutes is not None:
        fields["expires_at"] = AT + timedelta(minutes=minutes)
    fields["metadata"] = draw(metadatas)
    return CreateCheckoutSession(**fields)


def _at(**fields: Any) -> dict[str, Any]:
    return {"session_id": st.just(SID), "at": st.just(AT), **fields}


def _routings(provider: st.SearchStrategy[Provider]) -> st.SearchStrategy[Command]:
    return st.builds(RecordRouting, **_at(provider=provider, explanation=explanations))


def _openings(provider: st.SearchStrategy[Provider]) -> st.SearchStrategy[Command]:
    return st.builds(
        RecordProviderSessionOpened,
        **_at(
            provider=provider,
            provider_session_id=st.sampled_from(["ps_1", "ps_2"]),
            checkout_url=st.none() | st.just("https://checkout.test/ps"),
            has_client_secret=st.booleans(),
            amounts=st.none() | amounts,
            references=st.just(ProviderReferences()),
        ),
    )


def _failures(provider: st.SearchStrategy[Provider]) -> st.SearchStrategy[Command]:
    return st.builds(
        RecordProviderCallFailed,
        **_at(
            provider=provider,
            error_code=st.sampled_from(["timeout", "rate_limited", "invalid_request"]),
            message=st.just("provider said no"),
            retryable=st.booleans(),
            fallback=st.none() | providers,
        ),
    )


creates = _creates()
routings = _routings(providers)
openings = _openings(providers)
failures = _failures(providers)
processings = st.builds(MarkProcessing, **_at(provider_status=st.none() | st.just("confirmed")))
# Hypothesis favours the first entries; unpaid leads, as the one completion with
# transitions after it, and no_payment_required is listed twice so it is not rare.
statuses = st.sampled_from(
    [
        PaymentStatus.UNPAID,
        PaymentStatus.NO_PAYMENT_REQUIRED,
        PaymentStatus.PAID,
        PaymentStatus.UNPAID,
        PaymentStatus.NO_PAYMENT_REQUIRED,
    ]
)
completions = st.builds(
    CompleteCheckoutSession, **_at(payment_status=statuses, amounts=st.none() | amounts)
)
async_results = st.builds(
    RecordAsyncPaymentResult,
    **_at(succeeded=st.booleans(), reason=st.none() | st.just("declined")),
)
expiries = st.builds(
    ExpireCheckoutSession, **_at(reason=st.sampled_from(["provider", "sweeper", "merchant"]))
)
cancels = st.builds(CancelCheckoutSession, **_at(reason=st.none() | st.just("customer left")))
commands: st.SearchStrategy[Command] = st.one_of(
    creates,
    routings,
    openings,
    failures,
    processings,
    completions,
    async_results,
    expiries,
    cancels,
)


def _likely_for(
    kind: type[State], provider: Provider
) -> st.SearchStrategy[st.SearchStrategy[Command]]:
    """Commands that often fit a state, so that deep states are reached at all.

    Uniform draws end most sessions with an expire or cancel before they are opened.
    Nothing here is guaranteed legal: a wrong provider, a second provider session id
    or a completion in another currency is still drawn and must be rejected.
    """
    opening, failure = _openings(st.just(provider)), _failures(st.just(provider))
    likely: dict[type[State], list[st.SearchStrategy[Command]]] = {
        Absent: [creates],
        Requested: [*[routings] * 6, expiries, cancels],
        Routed: [*[opening] * 4, failure, failure, completions, cancels],
        Opened: [processings, processings, *[completions] * 3, opening, expiries, cancels],
        Processing: [*[completions] * 3, processings, opening],
        Completed: [*[async_results] * 3, completions, opening],
    }
    # sampled_from keeps the repeats as weights (one_of would draw each branch equally)
    return st.sampled_from(likely.get(kind, [commands]))


LIKELY = {(kind, p): _likely_for(kind, p) for kind in LEGAL_STATES for p in Provider}


more = st.integers(0, 14).map(bool)  # one more step, 14 times in 15
# fitting first: it is what the shrinker moves towards, so a shrunk case stays readable
fits = st.sampled_from([True] * 5 + [False])


@st.composite
def _sequences(draw: st.DrawFn) -> list[Command]:
    """Up to 30 commands; five in six are drawn to fit the state reached so far.

    Each step starts with its own "one more?" draw (as `st.lists` does) rather than a
    count drawn up front, so the shrinker can delete a step without shifting the rest.
    """
    state: State = decider.INITIAL
    sequence: list[Command] = []
    while len(sequence) < 30 and (not sequence or draw(more)):
        provider = getattr(state, "provider", Provider.STRIPE)
        fitting = draw(fits)
        command = draw(draw(LIKELY[type(state), provider]) if fitting else commands)
        sequence.append(command)
        try:
            state = decider.fold(decider.decide(state, command), state)
        except CheckoutError:
            continue
    return sequence


sequences = _sequences()


def _settled(state: State) -> tuple[object, ...]:
    """Everything about a state that may not move once it is terminal."""
    return (
        type(state),
        *(
            getattr(state, field.name)
            for field in dataclasses.fields(state)
            if field.name != "provider_session_id"
        ),
    )


def _check_terminal_stays(terminal: State, state: State) -> None:
    assert _settled(state) == _settled(terminal)
    if isinstance(terminal, Completed) and terminal.provider_session_id is not None:
        assert isinstance(state, Completed)
        assert state.provider_session_id == terminal.provider_session_id


def _check_rejection(state: State, command: Command, error: CheckoutError) -> None:
    assert isinstance(error, REJECTIONS), error  # (a): a typed rejection, not a bug
    with pytest.raises(type(error)) as again:  # (e): nothing moved, same answer again
        decider.decide(state, command)
    assert again.value.to_dict() == error.to_dict()


def _run(sequence: list[Command]) -> list[State]:
    """Apply ``sequence`` checking every property on the way; returns the states reached."""
    state: State = decider.INITIAL
    history: list[CheckoutEvent] = []
    reached: list[State] = [state]
    terminal: State | None = None
    for command in sequence:
        try:
            events = decider.decide(state, command)
        except CheckoutError as error:
            _check_rejection(state, command, error)
            continue
        assert decider.decide(state, command) == events  # pure: same input, same output
        assert all(e.session_id == SID and e.occurred_at == command.at for e in events)
        previous, state = state, decider.fold(events, state)
        history += events
        reached.append(state)
        assert isinstance(state, LEGAL_STATES)  # (a)
        assert decider.fold(history) == state  # (d)
        if not isinstance(previous, Absent):
            assert not isinstance(state, Absent)
            assert state.request == previous.request  # (c)
            assert state.request.amount == previous.request.amount
        if terminal is not None:
            assert all(e.type == "provider_session_opened" for e in events)
            _check_terminal_stays(terminal, state)  # (b)
        elif is_terminal(state):
            terminal = state
        if events and command.type in IDEMPOTENT:
            assert decider.decide(state, command) == []  # (f)
    return reached


@SETTINGS
@given(sequences)
def test_random_command_sequences_keep_the_session_consistent(sequence: list[Command]) -> None:
    _run(sequence)


def _opened_late(before: State, after: State) -> bool:
    return (
        isinstance(before, Completed)
        and isinstance(after, Completed)
        and before.provider_session_id is None
        and after.provider_session_id is not None
    )


def test_the_generated_sequences_reach_every_state() -> None:
    """Guard for the test above: its strategy must actually reach every kind of state."""
    kinds: set[str] = {"absent"}
    outcomes: set[tuple[str, object]] = set()

    @settings(SETTINGS, derandomize=True, database=None)
    @given(sequences)
    def explore(sequence: list[Command]) -> None:
        reached = _run(sequence)
        for before, state in pairwise(reached):
            kinds.add(state.kind)
            if isinstance(state, Completed):
                outcomes.add(("completed", state.payment_status))
            if _opened_late(before, state):
                outcomes.add(("completed", "late_opened"))
            if isinstance(state, Failed):
                outcomes.add(("failed", state.cause))

    explore()
    assert kinds == {cls.kind for cls in LEGAL_STATES}
    assert outcomes == {
        ("completed", PaymentStatus.PAID),
        ("completed", PaymentStatus.UNPAID),
        ("completed", PaymentStatus.NO_PAYMENT_REQUIRED),
        ("completed", "late_opened"),
        ("failed", "no_provider"),
        ("failed", "async_payment"),
    }
