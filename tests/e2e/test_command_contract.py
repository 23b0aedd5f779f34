"""The command contract end to end (issue 13): real HTTP, NATS, Postgres and simulators.

- each row of the issue's table: refused with ``validation_failed`` and the field's
  ``loc``, nothing appended, nothing opened at a provider;
- idempotency as Stripe defines it: a key is bound to its request's parameters;
- two bounded properties: whatever Hypothesis makes of a create command (huge ints,
  unicode, control characters, long strings), an accepted one ends in the read models
  and no event is parked, over NATS (decide -> append -> project) and over HTTP.
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from iso3166 import countries_by_alpha2

from orchestrator.bootstrap import Endpoints, gateway, orchestrator, read_side
from orchestrator.client import CheckoutClient, CommandRejected
from orchestrator.sandbox.fleet import SandboxFleet
from tests.integration.test_commands import stream_messages
from tests.support.apps import settings_for
from tests.support.builders import create_body, layout_for, new_session_id

EXAMPLES = 50  # per property: bounded, so both run in CI in seconds


@pytest.fixture
async def contract(nats_url, database_url, stream_names):
    settings = settings_for(
        stream_names, api_auth="disabled", http_port=0, settlement_interval_seconds=60
    )
    endpoints = Endpoints(nats_url, database_url, embedded_nats=False, embedded_postgres=False)
    async with (
        SandboxFleet() as fleet,
        orchestrator(settings, nats_url, providers=fleet.providers) as system,
        read_side(settings, endpoints, serve_http=False) as read,
        gateway(settings, endpoints, read, fleet.providers) as gw,
        httpx.AsyncClient(base_url=gw.http_url, timeout=15) as http,
        await CheckoutClient.connect(nats_url, layout_for(stream_names)) as client,
    ):
        yield Contract(nats_url, system.layout.events_stream, read.pool, http, client, gw.http_url)


class Contract:
    def __init__(self, nats_url, stream, pool, http, client, base_url) -> None:
        self.nats_url = nats_url
        self.stream = stream
        self.pool: asyncpg.Pool = pool
        self.http: httpx.AsyncClient = http
        self.client: CheckoutClient = client
        self.base_url: str = base_url

    async def stored(self) -> int:
        return await stream_messages(self.nats_url, self.stream)

    async def parked(self) -> list[str]:
        rows = await self.pool.fetch("SELECT event_type, error FROM parked_events ORDER BY id")
        return [f"{r['event_type']}: {r['error']}" for r in rows]

    async def readable(self, session_id: str, sequence: int) -> dict[str, Any]:
        response = await self.http.get(
            f"/v1/checkout-sessions/{session_id}", headers={"Checkout-Min-Sequence": str(sequence)}
        )
        assert response.status_code == 200, response.text
        return response.json()


# -- the table of issue 13, over HTTP ----------------------------------------------------

TABLE = [
    pytest.param({"amount": 9223372036854775808}, ["amount"], id="amount 2^63"),
    pytest.param({"amount": 10**30}, ["amount"], id="amount 10^30"),
    pytest.param({"metadata": {"a": "x\u0000y"}}, ["metadata", "a"], id="NUL in metadata"),
    pytest.param(
        {"customer": {"email": "nope", "country": "GB"}}, ["customer", "email"], id="bad email"
    ),
    pytest.param(
        {"customer": {"email": "mo@example.test", "country": "ZZ"}},
        ["customer", "country"],
        id="country ZZ",
    ),
    pytest.param({"amount": "5000"}, ["amount"], id="amount as a JSON string"),
]


@pytest.mark.parametrize(("change", "loc"), TABLE)
async def test_each_row_of_the_table_is_refused_and_stores_nothing(contract, change, loc):
    before = await contract.stored()
    body = create_body() | change
    response = await contract.http.post("/v1/checkout-sessions", json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["code"] == "validation_failed"
    assert [e["loc"] for e in answer["errors"]] == [loc]
    assert await contract.stored() == before
    missing = await contract.http.get(f"/v1/checkout-sessions/{body['session_id']}")
    assert missing.status_code == 404


# -- idempotency -----------------------------------------------------------------------


async def test_the_same_key_with_other_parameters_is_refused_and_appends_nothing(contract):
    headers = {"Idempotency-Key": f"key-{new_session_id()}"}
    body = create_body(amount=2500)
    first = await contract.http.post("/v1/checkout-sessions", json=body, headers=headers)
    assert first.status_code == 201, first.text
    before = await contract.stored()
    reused = await contract.http.post(
        "/v1/checkout-sessions", json=body | {"amount": 9999}, headers=headers
    )
    assert reused.status_code == 400, reused.text
    answer = reused.json()
    assert answer["code"] == "idempotency_key_reused"
    assert first.json()["session_id"] not in reused.text  # names nothing of the first request
    assert first.json()["checkout_url"] not in reused.text
    assert await contract.stored() == before
    again = await contract.http.post("/v1/checkout-sessions", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["provider_session_id"] == first.json()["provider_session_id"]
    assert again.json()["duplicate"] is True


async def test_the_same_key_and_parameters_in_another_order_is_the_first_result(contract):
    headers = {"Idempotency-Key": f"key-{new_session_id()}"}
    body = create_body(metadata={"a": "1", "b": "2"}, currency="gbp")
    first = await contract.http.post("/v1/checkout-sessions", json=body, headers=headers)
    reordered = dict(reversed(list(body.items()))) | {
        "metadata": {"b": "2", "a": "1"},
        "currency": "GBP",
    }
    second = await contract.http.post("/v1/checkout-sessions", json=reordered, headers=headers)
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.json()["session_id"] == first.json()["session_id"]


async def test_a_refused_request_leaves_its_key_free_for_the_corrected_one(contract):
    headers = {"Idempotency-Key": f"key-{new_session_id()}"}
    body = create_body()
    bad = await contract.http.post(
        "/v1/checkout-sessions", json=body | {"amount": "5000"}, headers=headers
    )
    assert bad.status_code == 422, bad.text
    good = await contract.http.post("/v1/checkout-sessions", json=body, headers=headers)
    assert good.status_code == 201, good.text


async def test_a_key_reused_over_nats_is_refused_after_a_restart_too(
    contract, nats_url, stream_names
):
    """The fingerprint is stored on the events, not in memory: a second orchestrator (as
    after a restart) refuses the reuse as well."""
    key = f"key-{new_session_id()}"
    body = create_body()
    first = await contract.client.send("create", body, command_id=key)
    async with orchestrator(settings_for(stream_names), nats_url):  # a second instance
        for _ in range(4):  # the work queue hands some of them to the new one
            with pytest.raises(CommandRejected) as rejected:
                await contract.client.send("create", body | {"amount": 1}, command_id=key)
            assert rejected.value.code == "idempotency_key_reused"
        same = await contract.client.send("create", body, command_id=key)
    assert (same.session_id, same.duplicate) == (first.session_id, True)


# -- the two properties ------------------------------------------------------------------

_CONTROL = "".join(chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)])


def _mostly(valid: st.SearchStrategy[Any], edge: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Three in four values from ``valid``: enough commands are accepted to test them."""
    return st.sampled_from([valid, valid, valid, edge]).flatmap(lambda chosen: chosen)


_text = _mostly(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=40),
    st.one_of(
        st.text(alphabet=st.sampled_from(_CONTROL + "ab€山🧾"), max_size=10),
        st.integers(min_value=0, max_value=6000).map(lambda n: "x" * n),
    ),
)
_amount = _mostly(
    st.integers(min_value=1, max_value=99_999_999),
    st.one_of(
        st.integers(min_value=-5, max_value=0),
        st.sampled_from([99_999_999, 100_000_000, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 10**30]),
        st.integers(min_value=1, max_value=10**6).map(str),
    ),
)
_email = _mostly(st.emails(), _text)
_country = _mostly(
    st.sampled_from(sorted(countries_by_alpha2)),
    st.one_of(st.text(string.ascii_letters, min_size=2, max_size=2), _text),
)
_customer = st.fixed_dictionaries(
    {},
    optional={"email": _email, "country": _country, "name": _text, "phone": _text},
)
_line_item = st.fixed_dictionaries(
    {
        "name": _text.filter(bool),
        "quantity": _mostly(st.integers(1, 3), st.integers(1, 1_000_000)),
        "unit_amount": _amount,
    }
)
_priced = st.one_of(
    st.fixed_dictionaries({"amount": _amount}),
    st.fixed_dictionaries({"line_items": st.lists(_line_item, min_size=1, max_size=2)}),
)
_metadata = st.dictionaries(
    _mostly(st.text(string.ascii_letters + "_-", min_size=1, max_size=40), _text),
    _text,
    max_size=3,
)
CREATE_BODIES = st.tuples(
    st.fixed_dictionaries(
        {"currency": st.sampled_from(["GBP", "EUR", "USD", "XOF"])},
        optional={
            "customer": _customer,
            "metadata": _metadata,
            "client_reference_id": _text,
        },
    ),
    _priced,
).map(lambda parts: parts[0] | parts[1])
"""Create bodies as a caller may send them, a quarter of each field's values at or past
an edge (huge ints, amounts as strings, control characters, 6000-character strings)."""

# what a create may be refused with; never an internal error
REFUSALS = {"validation_failed", "no_route", "all_providers_failed", "provider_rejected"}

PROPERTY_SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure names its input
    suppress_health_check=list(HealthCheck),
)


async def _accepted_ends_in_the_read_models(contract, send) -> int:
    """Drive `send(body) -> (session_id, sequence) | None` from Hypothesis in a thread;
    check the read models once all are sent. Returns how many were accepted."""
    loop = asyncio.get_running_loop()
    accepted: list[tuple[str, int]] = []

    @given(body=CREATE_BODIES)
    @PROPERTY_SETTINGS
    def one(body: dict[str, Any]) -> None:
        result = asyncio.run_coroutine_threadsafe(send(body), loop).result(timeout=30)
        if result is not None:
            accepted.append(result)

    await asyncio.to_thread(one)
    for session_id, sequence in accepted:
        await contract.readable(session_id, sequence)
    assert await contract.parked() == []
    print(f"{len(accepted)} of {EXAMPLES} generated creates accepted")  # noqa: T201
    return len(accepted)


async def test_every_create_accepted_over_nats_is_projected_and_nothing_parks(contract):
    async def send(body: dict[str, Any]) -> tuple[str, int] | None:
        try:
            reply = await contract.client.send("create", body | {"session_id": new_session_id()})
        except CommandRejected as rejected:
            refusal = rejected.error
        else:
            return reply.session_id, reply.sequence
        assert refusal["code"] in REFUSALS, refusal
        return None

    assert await _accepted_ends_in_the_read_models(contract, send) > 0


async def test_every_create_accepted_over_http_is_readable_and_nothing_parks(contract):
    async def send(body: dict[str, Any]) -> tuple[str, int] | None:
        response = await contract.http.post("/v1/checkout-sessions", json=body)
        assert response.status_code < 500 or response.status_code == 502, response.text
        if response.status_code != 201:
            assert response.json()["code"] != "internal_error"
            return None
        created = response.json()
        return created["session_id"], created["sequence"]

    assert await _accepted_ends_in_the_read_models(contract, send) > 0


async def test_a_cancel_key_is_bound_to_its_reason_too(contract):
    created = await contract.http.post("/v1/checkout-sessions", json=create_body())
    session_id = created.json()["session_id"]
    headers = {"Idempotency-Key": f"cancel-{session_id}"}
    path = f"/v1/checkout-sessions/{session_id}/cancel"
    first = await contract.http.post(path, json={"reason": "customer left"}, headers=headers)
    assert first.status_code == 200, first.text
    same = await contract.http.post(path, json={"reason": "customer left"}, headers=headers)
    assert (same.status_code, same.json()["duplicate"]) == (200, True)
    other = await contract.http.post(path, json={"reason": "changed my mind"}, headers=headers)
    assert other.status_code == 400, other.text
    assert other.json()["code"] == "idempotency_key_reused"


async def test_the_openapi_document_states_the_contract(contract):
    document = (await contract.http.get("/openapi.json")).json()
    create = document["paths"]["/v1/checkout-sessions"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["amount"]["anyOf"][0]["maximum"] == 2**63 - 1
    assert body["properties"]["customer"]["properties"]["email"]["anyOf"][0]["format"] == "email"
    assert {"type", "at"}.isdisjoint(body["properties"])
    assert body["required"] == ["currency"]
    assert "idempotency_key_reused" in create["responses"]["400"]["description"]
    key = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")
    assert "idempotency_key_reused" in key["description"]
    assert "/v1/operator/parked-events" in document["paths"]


async def test_a_key_reused_for_another_session_is_refused(contract):
    """Within the server's duplicate window the events' Nats-Msg-Id (from the key) are
    refused as duplicates while the new session holds nothing: the key was used elsewhere."""
    headers = {"Idempotency-Key": f"key-{new_session_id()}"}
    first = await contract.http.post("/v1/checkout-sessions", json=create_body(), headers=headers)
    assert first.status_code == 201, first.text
    other = create_body()
    before = await contract.stored()
    reused = await contract.http.post("/v1/checkout-sessions", json=other, headers=headers)
    assert reused.status_code == 400, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert await contract.stored() == before
    missing = await contract.http.get(f"/v1/checkout-sessions/{other['session_id']}")
    assert missing.status_code == 404
