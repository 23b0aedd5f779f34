"""The console's pure parts: its session store and the totals chart."""

from __future__ import annotations

from datetime import date

from events.values import Provider
from orchestrator.http.api_keys import Scope
from orchestrator.http.console.auth import SESSION_SECONDS, ConsoleAuth, ConsoleSessions
from orchestrator.http.console.charts import totals_chart
from projections.schemas import ProviderTotal


def test_sessions_are_opaque_expire_and_close():
    now = [0.0]
    sessions = ConsoleSessions(lambda: now[0])
    opened = sessions.open("ck_id_secret", Scope.READ)
    assert "ck_id_secret" not in opened.token
    assert opened.csrf != opened.token
    assert len(opened.token) >= 40
    assert sessions.get(opened.token) == opened
    assert sessions.get("forged") is None
    assert sessions.get(None) is None
    now[0] = SESSION_SECONDS + 1
    assert sessions.get(opened.token) is None
    again = sessions.open("ck_id_secret", Scope.WRITE)
    sessions.close(again.token)
    assert sessions.get(again.token) is None


def test_the_oldest_sessions_go_first_beyond_the_limit():
    sessions = ConsoleSessions(limit=2)
    first, second, third = (sessions.open(None, Scope.READ) for _ in range(3))
    assert sessions.get(first.token) is None
    assert sessions.get(second.token) == second
    assert sessions.get(third.token) == third


async def test_without_api_keys_everyone_may_act_and_no_sign_in_is_needed():
    auth = ConsoleAuth(None, ConsoleSessions())
    assert auth.required is False
    session = await auth.sign_in("anything")
    assert session is not None
    assert session.can_act


def test_the_chart_escapes_its_labels_and_scales_to_the_largest():
    totals = [
        ProviderTotal(provider=Provider.STRIPE.value, currency="USD", status="complete",
                      sessions=8, amount=100, day=date(2026, 12, 1)),
        ProviderTotal(provider=Provider.STRIPE.value, currency="USD", status="failed",
                      sessions=2, amount=10, day=date(2026, 12, 1)),
        ProviderTotal(provider="<script>", currency="EUR", status="open", sessions=5,
                      amount=5, day=date(2026, 12, 1)),
    ]  # fmt: skip
    svg = str(totals_chart(totals))
    assert "<script>" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("<rect") == 3 + 5  # three bar parts, five legend keys
    assert "<title>failed: 2</title>" in svg
    assert "No checkouts" in str(totals_chart([]))
