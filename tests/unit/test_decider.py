"""Given/when/then tests of the session decider: every transition and every rejection.

``given(events).when(command).then(expected events)`` runs ``decide`` on the state
folded from ``events``, checks the emitted events, then folds them with ``evolve`` and
returns the new state so a test can check it. ``then_raises(Error)`` checks the typed
rejection. Time and ids are fixed: the decider is pure, so nothing else varies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from events.catalog import (
    AsyncPaymentFailed,
    AsyncPaymentSucceeded,
    CheckoutCanceled,
    CheckoutCompleted,
    CheckoutEvent,
    CheckoutExpired,
    CheckoutRequested,
    CheckoutRouted,
    DroppedCandidate,
    PaymentProcessing,
    ProviderCallFailed,
    ProviderSessionOpened,
    RoutingExplanation,
)
from events.values import (
    Amounts,
    Customer,
    LineItem,
    Mode,
    PaymentStatus,
    Provider,
    ProviderReferences,
    RequestedAmount,
    SessionUrls,
)
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
    CorruptHistory,
    IllegalTransition,
    InvalidCommand,
    SessionAlreadyExists,
    SessionNotFound,
)

SID = "cs_test_4eC39HqLyjWDarjtT1zdp7dc"
AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
PSID = "cs_stripe_a1b2c3"
OTHER_PSID = "cs_stripe_zzz999"
EXPLANATION = RoutingExplanation(
    rules_version="2026-11-21.1",
    matched_rule="usd-default",
    candidates=(Provider.STRIPE, Provider.POLAR),
    dropped=(DroppedCandidate(provider=Provider.LOMI, reason="unhealthy"),),
)
USD_AMOUNTS = Amounts(currency="USD", subtotal=5000, discount=0, tax=None, total=5000)


# --- the given/when/then helper ------------------------------------------------------


@dataclass(frozen=True)
class _When:
    history: tuple[CheckoutEvent, ...]
    command: Command

    def then(self, expected: Sequence[CheckoutEvent]) -> State:
        before = decider.fold(self.history)
        emitted = decider.decide(before, self.command)
        assert emitted == list(expected)
        return decider.fold(emitted, before)

    def then_raises(self, error: type[CheckoutError]) -> CheckoutError:
        before = decider.fold(self.history)
        with pytest.raises(error) as caught:
            decider.decide(before, self.command)
        assert decider.fold(self.history) == before  # nothing half-applied
        return caught.value


@dataclass(frozen=True)
class _Given:
    history: tuple[CheckoutEvent, ...]

    def when(self, command: Command) -> _When:
        return _When(self.history, command)


def given(events: Sequence[CheckoutEvent] = ()) -> _Given:
    return _Given(tuple(events))


# --- commands --------------------------------------------------------------------------


def create(**fields: object) -> CreateCheckoutSession:
    values: dict[str, object] = {
        "session_id": SID,
        "at": AT,
        "currency": "USD",
        "amount": 5000,
        "metadata": {"order_id": "ord_1"},
    }
    return CreateCheckoutSession.model_validate(values | fields)


def route(provider: Provider = Provider.STRIPE) -> RecordRouting:
    return RecordRouting(session_id=SID, at=AT, provider=provider, explanation=EXPLANATION)


def open_(provider: Provider = Provider.STRIPE, psid: str = PSID) -> RecordProviderSessionOpened:
    return RecordProviderSessionOpened(
        session_id=SID,
        at=AT,
        provider=provider,
        provider_session_id=psid,
        checkout_url=f"https://checkout.stripe.test/c/pay/{psid}",
        expires_at=AT + timedelta(hours=24),
        has_client_secret=True,
        amounts=USD_AMOUNTS,
        references=ProviderReferences(customer="cus_123"),
    )


def fail(
    provider: Provider = Provider.STRIPE, fallback: Provider | None = None
) -> RecordProviderCallFailed:
    return RecordProviderCallFailed(
        session_id=SID,
        at=AT,
        provider=provider,
        error_code="api_connection_error",
        message="connection reset",
        retryable=True,
        fallback=fallback,
    )


def mark_processing() -> MarkProcessing:
    return MarkProcessing(session_id=SID, at=AT, provider_status="confirmed")


def complete(
    status: PaymentStatus = PaymentStatus.PAID, amounts: Amounts | None = USD_AMOUNTS
) -> CompleteCheckoutSession:
    return CompleteCheckoutSession(
        session_id=SID,
        at=AT,
        payment_status=status,
        amounts=amounts,
        customer=Customer(email="jo@example.com"),
        references=ProviderReferences(payment_intent="pi_123"),
    )


def async_result(*, succeeded: bool) -> RecordAsyncPaymentResult:
    reason = None if succeeded else "insufficient_funds"
    return RecordAsyncPaymentResult(session_id=SID, at=AT, succeeded=succeeded, reason=reason)


def expire() -> ExpireCheckoutSession:
    return ExpireCheckoutSession(session_id=SID, at=AT, reason="sweeper")


def cancel() -> CancelCheckoutSession:
    return CancelCheckoutSession(session_id=SID, at=AT, reason="customer left")


# --- events (as the decider writes them for the commands above) -----------------------


def requested() -> CheckoutRequested:
    return CheckoutRequested(
        session_id=SID,
        occurred_at=AT,
        mode=Mode.PAYMENT,
        amount=RequestedAmount(currency="USD", amount=5000),
        metadata={"order_id": "ord_1"},
    )


def routed(provider: Provider = Provider.STRIPE) -> CheckoutRouted:
    return CheckoutRouted(
        session_id=SID, occurred_at=AT, provider=provider, attempt=1, explanation=EXPLANATION
    )


def opened(
    provider: Provider = Provider.STRIPE, attempt: int = 1, psid: str = PSID
) -> ProviderSessionOpened:
    return ProviderSessionOpened(
        session_id=SID,
        occurred_at=AT,
        provider=provider,
        attempt=attempt,
        provider_session_id=psid,
        checkout_url=f"https://checkout.stripe.test/c/pay/{psid}",
        expires_at=AT + timedelta(hours=24),
        has_client_secret=True,
        amounts=USD_AMOUNTS,
        references=ProviderReferences(customer="cus_123"),
    )


def call_failed(
    provider: Provider = Provider.STRIPE, attempt: int = 1, fallback: Provider | None = None
) -> ProviderCallFailed:
    return ProviderCallFailed(
        session_id=SID,
        occurred_at=AT,
        provider=provider,
        attempt=attempt,
        error_code="api_connection_error",
        message="connection reset",
        retryable=True,
        fallback=fallback,
    )


def processing() -> PaymentProcessing:
    return PaymentProcessing(session_id=SID, occurred_at=AT, provider_status="confirmed")


def completed(
    status: PaymentStatus = PaymentStatus.PAID, amounts: Amounts | None = USD_AMOUNTS
) -> CheckoutCompleted:
    return CheckoutCompleted(
        session_id=SID,
        occurred_at=AT,
        payment_status=status,
        amounts=amounts,
        customer=Customer(email="jo@example.com"),
        references=ProviderReferences(payment_intent="pi_123"),
    )


def async_succeeded() -> AsyncPaymentSucceeded:
    return AsyncPaymentSucceeded(session_id=SID, occurred_at=AT)


def async_failed() -> AsyncPaymentFailed:
    return AsyncPaymentFailed(session_id=SID, occurred_at=AT, reason="insufficient_funds")


def expired() -> CheckoutExpired:
    return CheckoutExpired(session_id=SID, occurred_at=AT, reason="sweeper")


def canceled() -> CheckoutCanceled:
    return CheckoutCanceled(session_id=SID, occurred_at=AT, reason="customer left")


# --- histories, one per reachable state ------------------------------------------------

REQUESTED: list[CheckoutEvent] = [requested()]
ROUTED: list[CheckoutEvent] = [*REQUESTED, routed()]
OPENED: list[CheckoutEvent] = [*ROUTED, opened()]
PROCESSING: list[CheckoutEvent] = [*OPENED, processing()]
COMPLETED_PAID: list[CheckoutEvent] = [*OPENED, completed(PaymentStatus.PAID)]
COMPLETED_UNPAID: list[CheckoutEvent] = [*OPENED, completed(PaymentStatus.UNPAID)]
COMPLETED_FREE: list[CheckoutEvent] = [*OPENED, completed(PaymentStatus.NO_PAYMENT_REQUIRED)]
COMPLETED_BEFORE_OPENED: list[CheckoutEvent] = [*ROUTED, completed(PaymentStatus.PAID)]
PAID_AFTER_ASYNC: list[CheckoutEvent] = [*COMPLETED_UNPAID, async_succeeded()]
FAILED_NO_PROVIDER: list[CheckoutEvent] = [*ROUTED, call_failed()]
FAILED_ASYNC: list[CheckoutEvent] = [*COMPLETED_UNPAID, async_failed()]
EXPIRED: list[CheckoutEvent] = [*OPENED, expired()]
CANCELED: list[CheckoutEvent] = [*OPENED, canceled()]

HISTORIES: dict[str, list[CheckoutEvent]] = {
    "requested": REQUESTED,
    "routed": ROUTED,
    "open": OPENED,
    "processing": PROCESSING,
    "completed_paid": COMPLETED_PAID,
    "completed_unpaid": COMPLETED_UNPAID,
    "completed_no_payment_required": COMPLETED_FREE,
    "completed_before_opened": COMPLETED_BEFORE_OPENED,
    "paid_after_async": PAID_AFTER_ASYNC,
    "failed_no_provider": FAILED_NO_PROVIDER,
    "failed_async": FAILED_ASYNC,
    "expired": EXPIRED,
    "canceled": CANCELED,
}


def histories(*names: str) -> list[object]:
    return [pytest.param(HISTORIES[name], id=name) for name in names]


def histories_except(*names: str) -> list[object]:
    return histories(*(name for name in HISTORIES if name not in names))


def assert_illegal(history: Sequence[CheckoutEvent], command: Command) -> None:
    error = given(history).when(command).then_raises(IllegalTransition)
    state = decider.fold(history)
    assert error.code == "illegal_transition"
    assert error.details == {"session_id": SID, "state": state.kind, "command": command.type}


# --- the helper itself -------------------------------------------------------------------


def test_histories_fold_to_the_states_they_are_named_for() -> None:
    kinds = {name: decider.fold(events).kind for name, events in HISTORIES.items()}
    assert kinds == {
        "requested": "requested",
        "routed": "routed",
        "open": "open",
        "processing": "processing",
        "completed_paid": "completed",
        "completed_unpaid": "completed",
        "completed_no_payment_required": "completed",
        "completed_before_opened": "completed",
        "paid_after_async": "completed",
        "failed_no_provider": "failed",
        "failed_async": "failed",
        "expired": "expired",
        "canceled": "canceled",
    }


def test_empty_history_is_absent() -> None:
    assert decider.fold([]) == Absent()
    assert isinstance(decider.INITIAL, Absent)
    assert not is_terminal(Absent())


# --- create ------------------------------------------------------------------------------


def test_create_on_absent_session_requests_checkout() -> None:
    state = given().when(create()).then([requested()])
    assert state == Requested(requested())
    assert not is_terminal(state)


def test_create_carries_every_field_of_the_request() -> None:
    items = (
        LineItem(name="T-shirt", quantity=2, unit_amount=1500),
        LineItem(name="Mug", quantity=1, unit_amount=2000, currency="USD"),
    )
    urls = SessionUrls(
        success_url="https://shop.test/ok?id={CHECKOUT_SESSION_ID}",
        cancel_url="https://shop.test/cart",
    )
    customer = Customer(email="jo@example.com", country="us")
    expires_at = AT + timedelta(hours=1)
    command = create(
        amount=None,
        line_items=items,
        customer=customer,
        urls=urls,
        ui_mode="embedded",
        client_reference_id="ref-9",
        expires_at=expires_at,
    )
    expected = CheckoutRequested(
        session_id=SID,
        occurred_at=AT,
        mode=Mode.PAYMENT,
        amount=RequestedAmount(currency="USD", amount=None, line_items=items),
        customer=customer,
        urls=urls,
        ui_mode="embedded",
        metadata={"order_id": "ord_1"},
        client_reference_id="ref-9",
        expires_at=expires_at,
    )
    state = given().when(command).then([expected])
    assert isinstance(state, Requested)
    assert state.request.amount.total == 5000
    assert state.request.customer.country == "US"


def test_create_in_setup_mode_takes_no_amount() -> None:
    expected = CheckoutRequested(
        session_id=SID,
        occurred_at=AT,
        mode=Mode.SETUP,
        amount=RequestedAmount(currency="USD"),
        metadata={"order_id": "ord_1"},
    )
    state = given().when(create(mode=Mode.SETUP, amount=None)).then([expected])
    assert isinstance(state, Requested)
    assert state.request.amount.total is None


@pytest.mark.parametrize("history", histories(*HISTORIES))
def test_create_on_existing_session_is_rejected(history: list[CheckoutEvent]) -> None:
    error = given(history).when(create()).then_raises(SessionAlreadyExists)
    assert error.code == "session_exists"
    assert error.details == {"session_id": SID}


@pytest.mark.parametrize(
    "command",
    [
        route(),
        open_(),
        fail(),
        mark_processing(),
        complete(),
        async_result(succeeded=True),
        async_result(succeeded=False),
        expire(),
        cancel(),
    ],
    ids=lambda c: c.type,
)
def test_every_other_command_on_absent_session_is_not_found(command: Command) -> None:
    error = given().when(command).then_raises(SessionNotFound)
    assert error.code == "session_not_found"
    assert error.to_dict() == {
        "code": "session_not_found",
        "message": f"no checkout session {SID}",
        "session_id": SID,
    }


# --- record_routing ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(Provider))
def test_routing_a_requested_session_makes_attempt_one(provider: Provider) -> None:
    state = given(REQUESTED).when(route(provider)).then([routed(provider)])
    assert state == Routed(requested(), provider, 1)


@pytest.mark.parametrize("history", histories_except("requested"))
def test_routing_is_only_allowed_once_right_after_the_request(
    history: list[CheckoutEvent],
) -> None:
    assert_illegal(history, route())


# --- record_provider_session_opened -----------------------------------------------------


def test_provider_session_opened_on_the_routed_provider() -> None:
    state = given(ROUTED).when(open_()).then([opened()])
    assert state == Opened(requested(), Provider.STRIPE, 1, PSID)
    assert not is_terminal(state)


def test_provider_session_opened_after_a_fallback_carries_the_attempt() -> None:
    history = [*REQUESTED, routed(), call_failed(fallback=Provider.POLAR)]
    state = given(history).when(open_(Provider.POLAR)).then([opened(Provider.POLAR, attempt=2)])
    assert state == Opened(requested(), Provider.POLAR, 2, PSID)


def test_provider_session_opened_by_another_provider_is_illegal() -> None:
    assert_illegal(ROUTED, open_(Provider.POLAR))


def test_provider_session_opened_by_the_provider_that_failed_over_is_illegal() -> None:
    history = [*REQUESTED, routed(), call_failed(fallback=Provider.POLAR)]
    assert_illegal(history, open_(Provider.STRIPE))


@pytest.mark.parametrize("history", histories("open", "processing"))
def test_duplicate_provider_session_opened_is_a_no_op(history: list[CheckoutEvent]) -> None:
    state = given(history).when(open_()).then([])
    assert state == decider.fold(history)


@pytest.mark.parametrize("history", histories("open", "processing"))
def test_a_second_provider_session_for_an_open_session_is_illegal(
    history: list[CheckoutEvent],
) -> None:
    assert_illegal(history, open_(psid=OTHER_PSID))


@pytest.mark.parametrize(
    "status", [PaymentStatus.PAID, PaymentStatus.UNPAID, PaymentStatus.NO_PAYMENT_REQUIRED]
)
def test_provider_session_opened_late_after_completion_fills_in_the_id(
    status: PaymentStatus,
) -> None:
    # the completion webhook overtook the provider's create response
    history = [*ROUTED, completed(status)]
    assert decider.fold(history) == Completed(requested(), Provider.STRIPE, 1, None, status)
    state = given(history).when(open_()).then([opened()])
    assert state == Completed(requested(), Provider.STRIPE, 1, PSID, status)


def test_late_opened_after_async_success_keeps_the_paid_status() -> None:
    history = [*ROUTED, completed(PaymentStatus.UNPAID), async_succeeded()]
    state = given(history).when(open_()).then([opened()])
    assert state == Completed(requested(), Provider.STRIPE, 1, PSID, PaymentStatus.PAID)


def test_late_opened_after_completion_by_another_provider_is_illegal() -> None:
    assert_illegal(COMPLETED_BEFORE_OPENED, open_(Provider.LOMI))


@pytest.mark.parametrize(
    "history", histories("completed_paid", "completed_unpaid", "paid_after_async")
)
def test_duplicate_opened_after_completion_is_a_no_op(history: list[CheckoutEvent]) -> None:
    state = given(history).when(open_()).then([])
    assert state == decider.fold(history)


def test_late_opened_twice_after_completion_is_a_no_op_the_second_time() -> None:
    given([*COMPLETED_BEFORE_OPENED, opened()]).when(open_()).then([])


@pytest.mark.parametrize(
    "history", histories("completed_paid", "completed_unpaid", "paid_after_async")
)
def test_another_provider_session_after_completion_is_illegal(
    history: list[CheckoutEvent],
) -> None:
    assert_illegal(history, open_(psid=OTHER_PSID))


@pytest.mark.parametrize(
    "history",
    histories("requested", "failed_no_provider", "failed_async", "expired", "canceled"),
)
def test_provider_session_opened_is_illegal_before_routing_and_after_failure_or_end(
    history: list[CheckoutEvent],
) -> None:
    assert_illegal(history, open_())


# --- record_provider_call_failed --------------------------------------------------------


def test_call_failed_with_fallback_routes_to_the_fallback_with_the_next_attempt() -> None:
    state = (
        given(ROUTED)
        .when(fail(fallback=Provider.POLAR))
        .then([call_failed(fallback=Provider.POLAR)])
    )
    assert state == Routed(requested(), Provider.POLAR, 2)
    assert not is_terminal(state)


def test_call_failed_on_the_fallback_records_its_attempt_and_can_fall_back_again() -> None:
    history = [*ROUTED, call_failed(fallback=Provider.POLAR)]
    state = (
        given(history)
        .when(fail(Provider.POLAR, fallback=Provider.LOMI))
        .then([call_failed(Provider.POLAR, attempt=2, fallback=Provider.LOMI)])
    )
    assert state == Routed(requested(), Provider.LOMI, 3)


def test_call_failed_without_fallback_fails_the_session() -> None:
    state = given(ROUTED).when(fail()).then([call_failed()])
    assert state == Failed(requested(), "no_provider")
    assert is_terminal(state)


def test_call_failed_on_the_last_fallback_fails_the_session() -> None:
    history = [*ROUTED, call_failed(fallback=Provider.POLAR)]
    state = given(history).when(fail(Provider.POLAR)).then([call_failed(Provider.POLAR, 2)])
    assert state == Failed(requested(), "no_provider")


def test_call_failed_for_a_provider_the_session_is_not_routed_to_is_illegal() -> None:
    assert_illegal(ROUTED, fail(Provider.LOMI, fallback=Provider.POLAR))


@pytest.mark.parametrize("history", histories_except("routed"))
def test_call_failed_is_only_allowed_while_routed(history: list[CheckoutEvent]) -> None:
    assert_illegal(history, fail(fallback=Provider.POLAR))


# --- mark_processing ---------------------------------------------------------------------


def test_processing_after_the_provider_session_opened() -> None:
    state = given(OPENED).when(mark_processing()).then([processing()])
    assert state == Processing(requested(), Provider.STRIPE, 1, PSID)
    assert not is_terminal(state)


def test_duplicate_processing_is_a_no_op() -> None:
    state = given(PROCESSING).when(mark_processing()).then([])
    assert state == Processing(requested(), Provider.STRIPE, 1, PSID)


_COMPLETED = (
    "completed_paid",
    "completed_unpaid",
    "completed_no_payment_required",
    "completed_before_opened",
    "paid_after_async",
)


@pytest.mark.parametrize("history", histories(*_COMPLETED))
def test_processing_after_completion_is_a_late_notice_and_a_no_op(
    history: list[CheckoutEvent],
) -> None:
    given(history).when(mark_processing()).then([])


@pytest.mark.parametrize("history", histories_except("open", "processing", *_COMPLETED))
def test_processing_is_only_allowed_on_an_open_session(history: list[CheckoutEvent]) -> None:
    assert_illegal(history, mark_processing())


# --- complete ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "psid"),
    [
        pytest.param(ROUTED, None, id="routed"),
        pytest.param(OPENED, PSID, id="open"),
        pytest.param(PROCESSING, PSID, id="processing"),
    ],
)
@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (PaymentStatus.PAID, True),
        (PaymentStatus.UNPAID, False),
        (PaymentStatus.NO_PAYMENT_REQUIRED, True),
    ],
)
def test_complete_from_routed_open_or_processing(
    history: list[CheckoutEvent], psid: str | None, status: PaymentStatus, *, terminal: bool
) -> None:
    state = given(history).when(complete(status)).then([completed(status)])
    assert state == Completed(requested(), Provider.STRIPE, 1, psid, status)
    assert is_terminal(state) is terminal


def test_complete_without_amounts_is_accepted() -> None:
    given(OPENED).when(complete(amounts=None)).then([completed(amounts=None)])


def test_complete_after_a_fallback_keeps_the_fallback_provider_and_attempt() -> None:
    history = [*ROUTED, call_failed(fallback=Provider.POLAR), opened(Provider.POLAR, 2)]
    state = given(history).when(complete()).then([completed()])
    assert state == Completed(requested(), Provider.POLAR, 2, PSID, PaymentStatus.PAID)


@pytest.mark.parametrize(
    ("history", "status"),
    [
        pytest.param(COMPLETED_PAID, PaymentStatus.PAID, id="paid"),
        pytest.param(COMPLETED_UNPAID, PaymentStatus.UNPAID, id="unpaid"),
        pytest.param(COMPLETED_FREE, PaymentStatus.NO_PAYMENT_REQUIRED, id="free"),
        pytest.param(PAID_AFTER_ASYNC, PaymentStatus.PAID, id="paid-after-async"),
    ],
)
def test_duplicate_complete_is_a_no_op(history: list[CheckoutEvent], status: PaymentStatus) -> None:
    state = given(history).when(complete(status)).then([])
    assert state == decider.fold(history)


def test_complete_paid_on_a_session_completed_unpaid_is_illegal() -> None:
    # the settlement of a delayed method is an async payment result, not a second completion
    assert_illegal(COMPLETED_UNPAID, complete(PaymentStatus.PAID))


def test_complete_unpaid_after_the_session_was_paid_is_illegal() -> None:
    assert_illegal(COMPLETED_PAID, complete(PaymentStatus.UNPAID))
    assert_illegal(PAID_AFTER_ASYNC, complete(PaymentStatus.UNPAID))


@pytest.mark.parametrize(
    "history", histories("requested", "expired", "canceled", "failed_no_provider", "failed_async")
)
@pytest.mark.parametrize("status", list(PaymentStatus))
def test_complete_is_illegal_before_routing_and_after_expiry_cancel_or_failure(
    history: list[CheckoutEvent], status: PaymentStatus
) -> None:
    assert_illegal(history, complete(status))


@pytest.mark.parametrize("history", histories("routed", "open", "processing"))
def test_complete_with_amounts_in_another_currency_is_invalid(
    history: list[CheckoutEvent],
) -> None:
    eur = Amounts(currency="EUR", total=5000)
    error = given(history).when(complete(amounts=eur)).then_raises(InvalidCommand)
    assert isinstance(error, InvalidCommand)
    assert error.code == "validation_failed"
    assert "EUR" in error.message
    assert "USD" in error.message
    assert error.errors == [
        {"loc": ["amounts", "currency"], "msg": "currency differs from the session's"}
    ]


# --- record_async_payment_result --------------------------------------------------------


def test_async_payment_success_after_complete_unpaid_makes_it_paid() -> None:
    state = given(COMPLETED_UNPAID).when(async_result(succeeded=True)).then([async_succeeded()])
    assert state == Completed(requested(), Provider.STRIPE, 1, PSID, PaymentStatus.PAID)
    assert is_terminal(state)


def test_async_payment_failure_after_complete_unpaid_fails_the_session() -> None:
    state = given(COMPLETED_UNPAID).when(async_result(succeeded=False)).then([async_failed()])
    assert state == Failed(requested(), "async_payment")
    assert is_terminal(state)


def test_async_payment_success_on_a_session_completed_before_opened() -> None:
    history = [*ROUTED, completed(PaymentStatus.UNPAID)]
    state = given(history).when(async_result(succeeded=True)).then([async_succeeded()])
    assert state == Completed(requested(), Provider.STRIPE, 1, None, PaymentStatus.PAID)


@pytest.mark.parametrize("history", histories("completed_paid", "paid_after_async"))
def test_duplicate_async_success_is_a_no_op(history: list[CheckoutEvent]) -> None:
    given(history).when(async_result(succeeded=True)).then([])


def test_duplicate_async_failure_is_a_no_op() -> None:
    state = given(FAILED_ASYNC).when(async_result(succeeded=False)).then([])
    assert state == Failed(requested(), "async_payment")


@pytest.mark.parametrize("history", histories("completed_paid", "paid_after_async"))
def test_async_failure_after_payment_succeeded_is_illegal(history: list[CheckoutEvent]) -> None:
    assert_illegal(history, async_result(succeeded=False))


def test_async_success_after_async_failure_is_illegal() -> None:
    assert_illegal(FAILED_ASYNC, async_result(succeeded=True))


@pytest.mark.parametrize(
    "history",
    histories(
        "requested",
        "routed",
        "open",
        "processing",
        "completed_no_payment_required",
        "failed_no_provider",
        "expired",
        "canceled",
    ),
)
@pytest.mark.parametrize("succeeded", [True, False])
def test_async_payment_result_is_only_allowed_after_complete_unpaid(
    history: list[CheckoutEvent], *, succeeded: bool
) -> None:
    assert_illegal(history, async_result(succeeded=succeeded))


# --- expire and cancel ----------------------------------------------------------------------


@pytest.mark.parametrize("history", histories("requested", "routed", "open"))
def test_expire_from_requested_routed_or_open(history: list[CheckoutEvent]) -> None:
    state = given(history).when(expire()).then([expired()])
    assert state == Expired(requested())
    assert is_terminal(state)


def test_expire_carries_its_reason() -> None:
    command = ExpireCheckoutSession(session_id=SID, at=AT, reason="provider")
    given(OPENED).when(command).then(
        [CheckoutExpired(session_id=SID, occurred_at=AT, reason="provider")]
    )


def test_expire_defaults_to_the_merchant_as_reason() -> None:
    command = ExpireCheckoutSession(session_id=SID, at=AT)
    given(OPENED).when(command).then(
        [CheckoutExpired(session_id=SID, occurred_at=AT, reason="merchant")]
    )


def test_duplicate_expire_is_a_no_op() -> None:
    state = given(EXPIRED).when(expire()).then([])
    assert state == Expired(requested())


def test_expire_after_cancel_and_cancel_after_expire_are_no_ops() -> None:
    # e.g. Stripe's own "expired" webhook after we canceled by expiring the session there
    assert given(CANCELED).when(expire()).then([]) == Canceled(requested())
    assert given(EXPIRED).when(cancel()).then([]) == Expired(requested())


@pytest.mark.parametrize(
    "history", histories_except("requested", "routed", "open", "expired", "canceled")
)
def test_expire_is_rejected_from_processing_completed_and_failed(
    history: list[CheckoutEvent],
) -> None:
    assert_illegal(history, expire())


@pytest.mark.parametrize("history", histories("requested", "routed", "open"))
def test_cancel_from_requested_routed_or_open(history: list[CheckoutEvent]) -> None:
    state = given(history).when(cancel()).then([canceled()])
    assert state == Canceled(requested())
    assert is_terminal(state)


def test_duplicate_cancel_is_a_no_op() -> None:
    state = given(CANCELED).when(cancel()).then([])
    assert state == Canceled(requested())


@pytest.mark.parametrize(
    "history", histories_except("requested", "routed", "open", "canceled", "expired")
)
def test_cancel_is_rejected_from_processing_completed_and_failed(
    history: list[CheckoutEvent],
) -> None:
    assert_illegal(history, cancel())


# --- terminal states ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "terminal"),
    [
        pytest.param(REQUESTED, False, id="requested"),
        pytest.param(ROUTED, False, id="routed"),
        pytest.param(OPENED, False, id="open"),
        pytest.param(PROCESSING, False, id="processing"),
        pytest.param(COMPLETED_UNPAID, False, id="completed_unpaid"),
        pytest.param(COMPLETED_PAID, True, id="completed_paid"),
        pytest.param(COMPLETED_FREE, True, id="completed_no_payment_required"),
        pytest.param(FAILED_NO_PROVIDER, True, id="failed_no_provider"),
        pytest.param(FAILED_ASYNC, True, id="failed_async"),
        pytest.param(EXPIRED, True, id="expired"),
        pytest.param(CANCELED, True, id="canceled"),
    ],
)
def test_is_terminal(history: list[CheckoutEvent], *, terminal: bool) -> None:
    assert is_terminal(decider.fold(history)) is terminal


# --- evolve on a corrupt stream -----------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "event"),
    [
        pytest.param([], routed(), id="routed-before-requested"),
        pytest.param(REQUESTED, requested(), id="requested-twice"),
        pytest.param(REQUESTED, opened(), id="opened-before-routed"),
        pytest.param(REQUESTED, completed(), id="completed-before-routed"),
        pytest.param(OPENED, call_failed(), id="call-failed-after-opened"),
        pytest.param(ROUTED, processing(), id="processing-before-opened"),
        pytest.param(OPENED, async_succeeded(), id="async-before-completed"),
        pytest.param(PROCESSING, expired(), id="expired-while-processing"),
        pytest.param(COMPLETED_PAID, canceled(), id="canceled-after-completed"),
        pytest.param(EXPIRED, completed(), id="completed-after-expired"),
    ],
)
def test_evolve_rejects_an_event_the_state_cannot_take(
    history: list[CheckoutEvent], event: CheckoutEvent
) -> None:
    state = decider.fold(history)
    with pytest.raises(CorruptHistory) as caught:
        decider.evolve(state, event)
    assert caught.value.code == "corrupt_history"
    assert caught.value.details == {"session_id": SID}
    assert event.type in caught.value.message
