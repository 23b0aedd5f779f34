"""The shared sandbox machinery (server, faults, webhooks, control routes) on a toy provider."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from orchestrator.http.server import HttpServer
from orchestrator.sandbox.faults import Faults
from orchestrator.sandbox.simulator import DriveRequest, DriveResult, Simulator, SimulatorError
from orchestrator.sandbox.webhooks import RetryPolicy
from tests.support.waiting import wait_until


class ToySimulator(Simulator):
    provider = "toy"

    def __init__(self, **kwargs: Any) -> None:
        self.sessions: dict[str, str] = {}
        super().__init__(**kwargs)

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/v1/sessions")
        async def create() -> dict[str, str]:
            session_id = f"toy_{len(self.sessions) + 1}"
            self.sessions[session_id] = "open"
            return {"id": session_id, "status": "open"}

    def error_response(self, error: SimulatorError) -> Response:
        return JSONResponse({"toy_error": error.message}, status_code=error.status)

    async def _drive(self, session_id: str, status: str, drive: DriveRequest | None) -> DriveResult:
        if session_id not in self.sessions:
            raise SimulatorError(404, f"no session {session_id}")
        self.sessions[session_id] = status
        body = json.dumps({"id": session_id, "status": status}).encode()
        delivery = await self.emit(
            f"evt_{status}",
            f"session.{status}",
            body,
            lambda _body: {"Toy-Signature": "ok"},
            background=bool(drive and drive.background),
        )
        return DriveResult(session=self.describe(session_id), webhooks=[delivery.to_json()])

    async def pay(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        return await self._drive(session_id, "paid", drive)

    async def fail(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        return await self._drive(session_id, "failed", drive)

    async def expire(self, session_id: str, drive: DriveRequest | None = None) -> DriveResult:
        return await self._drive(session_id, "expired", drive)

    def describe(self, session_id: str) -> dict[str, Any]:
        if session_id not in self.sessions:
            raise SimulatorError(404, f"no session {session_id}")
        return {"id": session_id, "status": self.sessions[session_id]}

    def stats(self) -> dict[str, int]:
        return {"sessions_created": len(self.sessions)}


class Receiver:
    """A webhook endpoint that fails its first ``failures`` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            self.received.append((dict(request.headers), await request.body()))
            if self.failures > 0:
                self.failures -= 1
                return Response(status_code=500)
            return Response(status_code=204)


async def test_server_serves_on_a_free_port_and_stops() -> None:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"pong": True}

    async with HttpServer(app) as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{server.base_url}/ping")
        assert response.json() == {"pong": True}
    assert not server.running
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{server.base_url}/ping")


async def test_control_routes_drive_and_count() -> None:
    receiver = Receiver()
    async with (
        HttpServer(receiver.app) as hook_server,
        ToySimulator() as sim,
        httpx.AsyncClient(base_url=sim.base_url) as client,
    ):
        await client.post("/_sim/webhooks", json={"url": f"{hook_server.base_url}/hook"})
        created = (await client.post("/v1/sessions")).json()
        paid = (await client.post(f"/_sim/sessions/{created['id']}/pay")).json()
        stats = (await client.get("/_sim/stats")).json()
        missing = await client.post("/_sim/sessions/nope/pay")
    assert paid["session"]["status"] == "paid"
    assert paid["webhooks"][0]["state"] == "delivered"
    assert receiver.received[0][0]["toy-signature"] == "ok"
    assert stats["sessions_created"] == 1
    assert stats["webhooks_delivered"] == 1
    assert missing.status_code == 404
    assert missing.json() == {"toy_error": "no session nope"}


async def test_error_faults_next_n_then_healthy_and_control_routes_exempt() -> None:
    async with ToySimulator() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        plan = await client.post("/_sim/faults", json={"error_next": 2, "error_status": 502})
        assert plan.json()["error_next"] == 2
        statuses = [(await client.post("/v1/sessions")).status_code for _ in range(3)]
        assert (await client.get("/_sim/stats")).status_code == 200
        assert (await client.post("/_sim/faults", json={"error_status": 404})).status_code == 400
    assert statuses == [502, 502, 200]
    assert sim.stats()["sessions_created"] == 1
    assert sim.faults.injected_errors == 2


async def test_error_rate_is_reproducible() -> None:
    first, second = Faults(seed=7), Faults(seed=7)
    first.set(error_rate=0.5)
    second.set(error_rate=0.5)
    a = [(await first.on_request()).error_status for _ in range(20)]
    b = [(await second.on_request()).error_status for _ in range(20)]
    assert a == b
    assert 0 < a.count(503) < 20


async def test_hang_before_times_the_client_out_and_nothing_happens() -> None:
    async with ToySimulator() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.faults.set(hang_next=1, hang_seconds=5)
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/sessions", timeout=0.3)
        assert sim.stats()["sessions_created"] == 0


async def test_hang_after_processes_but_withholds_the_answer() -> None:
    async with ToySimulator() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.faults.set(hang_next=1, hang_seconds=5, hang_phase="after")
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/sessions", timeout=0.3)
        assert sim.stats()["sessions_created"] == 1


async def test_stop_releases_a_hanging_request_quickly() -> None:
    sim = ToySimulator()
    await sim.start()
    sim.faults.set(hang_next=1, hang_seconds=60)
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        request = asyncio.create_task(client.post("/v1/sessions", timeout=30))
        await wait_until(lambda: sim.faults.injected_hangs == 1, 10, what="the request to hang")
        started = time.monotonic()
        await sim.stop()
        assert time.monotonic() - started < 5
        await asyncio.wait_for(request, timeout=1)  # released: answered, not left hanging


async def test_latency_is_added() -> None:
    async with ToySimulator() as sim, httpx.AsyncClient(base_url=sim.base_url) as client:
        sim.faults.set(latency_seconds=0.3)
        started = time.monotonic()
        await client.post("/v1/sessions")
        assert time.monotonic() - started >= 0.3


async def test_webhooks_retry_then_deliver_and_redeliver_resigns() -> None:
    receiver = Receiver(failures=2)
    signatures = iter(range(100))
    async with (
        HttpServer(receiver.app) as hook_server,
        ToySimulator(
            webhook_url=f"{hook_server.base_url}/hook",
            retry=RetryPolicy(max_attempts=3, backoff_seconds=0.01),
        ) as sim,
    ):
        sim.sessions["toy_1"] = "open"
        delivery = await sim.emit(
            "evt_1",
            "session.paid",
            b"{}",
            lambda _b: {"Sig": str(next(signatures))},
            background=False,
        )
        assert delivery.state == "delivered"
        assert [a.status_code for a in delivery.attempts] == [500, 500, 204]
        again = await sim.webhooks.redeliver(delivery.delivery_id)
    assert again.event_id == "evt_1"
    assert [h["sig"] for h, _ in receiver.received] == ["0", "1", "2", "3"]


async def test_webhooks_give_up_after_max_attempts() -> None:
    receiver = Receiver(failures=10)
    async with (
        HttpServer(receiver.app) as hook_server,
        ToySimulator(
            webhook_url=f"{hook_server.base_url}/hook",
            retry=RetryPolicy(max_attempts=2, backoff_seconds=0.01),
        ) as sim,
    ):
        delivery = await sim.emit("e", "t", b"{}", lambda _b: {}, background=False)
    assert delivery.state == "failed"
    assert len(receiver.received) == 2


async def test_dropped_webhook_is_recorded_not_sent() -> None:
    receiver = Receiver()
    async with (
        HttpServer(receiver.app) as hook_server,
        ToySimulator(webhook_url=f"{hook_server.base_url}/hook") as sim,
        httpx.AsyncClient(base_url=sim.base_url) as client,
    ):
        await client.post("/_sim/faults", json={"drop_webhooks_next": 1})
        session = (await client.post("/v1/sessions")).json()["id"]
        dropped = (await client.post(f"/_sim/sessions/{session}/pay")).json()
        delivered = (await client.post(f"/_sim/sessions/{session}/expire")).json()
        listed = (await client.get("/_sim/webhooks")).json()
    assert dropped["webhooks"][0]["state"] == "dropped"
    assert delivered["webhooks"][0]["state"] == "delivered"
    assert [d["state"] for d in listed["deliveries"]] == ["dropped", "delivered"]
    assert len(receiver.received) == 1
    assert sim.all_stats()["dropped_webhooks"] == 1


async def test_background_delivery_and_wait_idle() -> None:
    receiver = Receiver()
    async with (
        HttpServer(receiver.app) as hook_server,
        ToySimulator(webhook_url=f"{hook_server.base_url}/hook") as sim,
        httpx.AsyncClient(base_url=sim.base_url) as client,
    ):
        session = (await client.post("/v1/sessions")).json()["id"]
        answer = (
            await client.post(f"/_sim/sessions/{session}/pay", json={"background": True})
        ).json()
        await sim.webhooks.wait_idle()
    assert answer["webhooks"][0]["state"] == "pending"
    assert len(receiver.received) == 1


async def test_restart_serves_on_the_same_port_and_still_sends_webhooks() -> None:
    receiver = Receiver()
    async with HttpServer(receiver.app) as hook_server:
        sim = ToySimulator(webhook_url=f"{hook_server.base_url}/hook")
        await sim.start()
        first_url = sim.base_url
        await sim.stop()
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):  # the provider is down
                await client.post(f"{first_url}/v1/sessions")
            await sim.start()
            try:
                assert sim.base_url == first_url
                session = (await client.post(f"{first_url}/v1/sessions")).json()["id"]
                paid = await sim.pay(session)
            finally:
                await sim.stop()
    assert paid.webhooks[0]["state"] == "delivered"
