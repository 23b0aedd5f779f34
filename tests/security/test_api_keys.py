"""API keys on the HTTP API: who gets in, with what, and what the database keeps."""

from __future__ import annotations

import json

from orchestrator.http.api_keys import Scope
from tests.security.conftest import CACHE_SECONDS
from tests.support.apps import session_where
from tests.support.builders import create_body
from tests.support.waiting import wait_until


async def test_no_key_and_a_wrong_key_are_401_unauthenticated(secured):
    key_id = secured.write_key.split("_")[1]
    wrong = [
        None,
        "ck_nope_nope",
        f"ck_{key_id}_{'A' * 43}",  # a real id, a wrong secret
        secured.write_key[:-1] + ("A" if secured.write_key[-1] != "A" else "B"),
        "garbage",
    ]
    for key in wrong:
        async with secured.client(key) as http:
            for method, path in (
                ("GET", "/v1/checkout-sessions"),
                ("POST", "/v1/checkout-sessions"),
            ):
                response = await http.request(method, path, json=create_body())
                assert response.status_code == 401, (key, method, response.text)
                assert response.json()["code"] == "unauthenticated"
                assert response.headers["www-authenticate"] == "Bearer"
    async with secured.client() as http:
        basic = await http.get("/v1/checkout-sessions", headers={"authorization": "Basic eDp5"})
        assert basic.status_code == 401


async def test_a_read_key_reads_but_may_not_send_commands(secured):
    async with secured.client(secured.read_key) as http:
        assert (await http.get("/v1/checkout-sessions")).status_code == 200
        assert (await http.head("/v1/checkout-sessions")).status_code in (200, 405)
        for path in (
            "/v1/checkout-sessions",
            "/v1/checkout-sessions/cs_x/expire",
            "/v1/checkout-sessions/cs_x/cancel",
        ):
            response = await http.post(path, json=create_body())
            assert response.status_code == 403, response.text
            assert response.json() == {"code": "forbidden", "message": "this API key may only read"}


async def test_a_write_key_does_everything(secured):
    async with secured.client(secured.write_key) as http:
        created = await http.post("/v1/checkout-sessions", json=create_body())
        assert created.status_code == 201, created.text
        await session_where(http, created.json()["session_id"], status="open")


async def test_a_revoked_key_stops_working_within_the_cache_bound(secured):
    key = await secured.keys.create(Scope.READ, "short-lived")
    async with secured.client(key.plaintext) as http:
        assert (await http.get("/v1/checkout-sessions")).status_code == 200
        assert await secured.keys.revoke(key.id)
        assert not await secured.keys.revoke(key.id)  # once

        async def refused() -> bool:
            return (await http.get("/v1/checkout-sessions")).status_code != 200

        await wait_until(refused, CACHE_SECONDS + 3.0, what="the revoked key refused")
        response = await http.get("/v1/checkout-sessions")
        assert response.status_code == 401
    listed = {info.id: info for info in await secured.keys.list()}
    assert listed[key.id].revoked_at is not None
    assert listed[key.id].scope is Scope.READ


async def test_webhooks_health_and_the_api_description_need_no_key(secured):
    async with secured.client(secured.write_key) as http:
        created = (await http.post("/v1/checkout-sessions", json=create_body())).json()
    async with secured.client() as anonymous:
        assert (await anonymous.get("/healthz")).status_code == 200
        assert (await anonymous.get("/docs")).status_code == 200
        spec = (await anonymous.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
        assert "security" not in spec["paths"]["/v1/webhooks/{provider}"]["post"]
        assert spec["paths"]["/v1/checkout-sessions"]["post"]["security"] == [{"ApiKey": []}]
        # a forged webhook is refused by its signature, not by a missing key
        forged = await anonymous.post(
            "/v1/webhooks/stripe",
            content=json.dumps({"id": "evt_x", "type": "checkout.session.completed"}),
            headers={"stripe-signature": "t=1,v1=00"},
        )
        assert forged.status_code == 400
    # the simulator's signed webhook gets in with no key and completes the session
    await secured.fleet.stripe.pay(created["provider_session_id"])
    async with secured.client(secured.read_key) as http:
        await session_where(http, created["session_id"], status="complete")


async def test_keys_are_stored_hashed_and_never_in_plaintext(secured):
    rows = await secured.read.pool.fetch("SELECT * FROM api_keys")
    assert len(rows) == 2
    dump = repr([dict(r) for r in rows]).encode()
    for key in (secured.write_key, secured.read_key):
        secret = key.split("_", 2)[2]
        assert key.encode() not in dump
        assert secret.encode() not in dump
    # nor anywhere else in the database
    async with secured.read.pool.acquire() as conn:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )]  # fmt: skip
        for table in tables:
            query = f"SELECT coalesce(string_agg(t::text, ' '), '') FROM \"{table}\" t"  # noqa: S608
            text = await conn.fetchval(query)
            for key in (secured.write_key, secured.read_key):
                assert key.split("_", 2)[2] not in text, table


async def test_the_openapi_security_follows_the_routes_declarations(secured):
    async with secured.client() as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
    protected, open_ = [], []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            (protected if "security" in operation else open_).append(f"{method} {path}")
            if "security" in operation:
                assert operation["security"] == [{"ApiKey": []}]
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
    assert open_ == ["post /v1/webhooks/{provider}"]
    assert "get /v1/checkout-sessions" in protected
    assert "post /v1/checkout-sessions/{session_id}/cancel" in protected
    # every protected route really refuses a request without a key
    async with secured.client() as anonymous:
        for route in protected:
            method, path = route.split(" ", 1)
            response = await anonymous.request(method, path.replace("{session_id}", "cs_x"))
            assert response.status_code == 401, (route, response.text)
