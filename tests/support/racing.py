"""A racing worker: one OS process of the racing-commands fault case
(tests/faults/test_racing_commands.py) sending its share of conflicting commands.

Run as ``python -m tests.support.racing PLAN.json``: it connects (NATS and HTTP), prints
"ready", waits for a line on stdin (the start signal, so every process fires at once), sends
every command of its plan concurrently, and prints one JSON line: an outcome per command.
Commands answered "queued" are sent again with the same id, as documented.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from orchestrator.client import CheckoutClient, CommandPending, CommandRejected
from orchestrator.jetstream.streams import StreamLayout

__all__ = ["RESENDS", "TYPED_REJECTIONS", "worker_main"]

TYPED_REJECTIONS = frozenset(
    {"payment_completed", "illegal_transition", "concurrency_conflict", "session_not_found"}
)


RESENDS = 5  # a command answered "queued" is sent again with the same id, as documented


async def _nats_command(client: CheckoutClient, command: dict[str, Any]) -> tuple[str, int]:
    """Outcome and how many times it was sent again after `CommandPending`."""
    kind, sid = command["kind"], command["session_id"]
    payload = {"session_id": sid, "reason": "merchant" if kind == "expire" else "racing"}
    command_id = f"race-{uuid.uuid4().hex}"
    for resends in range(RESENDS + 1):
        try:
            reply = await client.send(kind, payload, command_id=command_id)
        except CommandRejected as rejected:
            return f"rejected:{rejected.code}", resends
        except CommandPending:
            continue
        return ("applied" if reply.appended else "no-op"), resends
    return "pending", RESENDS


async def _http_command(http: httpx.AsyncClient, command: dict[str, Any]) -> tuple[str, int]:
    kind, sid = command["kind"], command["session_id"]
    if kind == "http_expire":
        url = f"{command['gateway']}/v1/checkout-sessions/{sid}/expire"
        headers = {"Idempotency-Key": f"race-{uuid.uuid4().hex}"}
        for resends in range(RESENDS + 1):
            response = await http.post(url, headers=headers)
            if response.status_code == 202:  # queued: send again with the same key
                continue
            if response.status_code == 200:
                return ("applied" if response.json().get("appended") else "no-op"), resends
            code = response.json().get("code")
            typed = response.status_code < 500 or code != "internal_error"
            outcome = f"rejected:{code}" if typed else f"untyped:http_{response.status_code}"
            return outcome, resends
        return "pending", RESENDS
    drive = "pay" if kind == "provider_pay" else "expire"
    response = await http.post(f"{command['sim']}/_sim/sessions/{command['psid']}/{drive}")
    if response.status_code == 200:
        return "driven", 0
    if response.status_code == 409:
        return "provider:not_open", 0
    return f"untyped:sim_{response.status_code}", 0


async def _run_worker(plan: dict[str, Any]) -> list[dict[str, Any]]:
    layout = StreamLayout(**plan["layout"])
    async with (
        await CheckoutClient.connect(plan["nats_url"], layout) as client,
        httpx.AsyncClient(timeout=30) as http,
    ):
        await http.get(f"{plan['gateway']}/healthz")  # connections warm before the start
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        gate = asyncio.Semaphore(plan.get("concurrency", 64))

        async def one(command: dict[str, Any]) -> dict[str, Any]:
            async with gate:
                started = time.monotonic()
                resends = 0
                try:
                    if command["kind"] in {"expire", "cancel"}:
                        outcome, resends = await _nats_command(client, command)
                    else:
                        outcome, resends = await _http_command(http, command)
                except Exception as exc:  # counted as untyped: the point of the case
                    outcome = f"untyped:{type(exc).__name__}"
                return {
                    "kind": command["kind"],
                    "session_id": command["session_id"],
                    "outcome": outcome,
                    "resends": resends,
                    "seconds": time.monotonic() - started,
                }

        return list(await asyncio.gather(*(one(c) for c in plan["commands"])))


def worker_main(path: str) -> None:
    plan = json.loads(Path(path).read_text())
    results = asyncio.run(_run_worker(plan))
    sys.stdout.write(json.dumps(results) + "\n")


if __name__ == "__main__":
    worker_main(sys.argv[1])
