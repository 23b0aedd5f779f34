"""`checkout-orchestrator up --role commands --workers N`: N processes take commands.

The real CLI in a subprocess, on the suite's NATS and Postgres with this test's stream
names: the first process starts N-1 more, each pulls from the one durable consumer (the
server counts their waiting pulls), commands are answered, and stopping the first stops all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import nats

from orchestrator.client import CheckoutClient
from orchestrator.jetstream.command_service import DURABLE
from tests.support.builders import layout_for, new_session_id
from tests.support.waiting import wait_until

WORKERS = 2


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            stat = (entry / "stat").read_text()
            if entry.name.isdigit() and int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


async def test_workers_n_starts_n_command_workers(tmp_path, nats_url, database_url, stream_names):
    layout = layout_for(stream_names)
    environment = {
        **os.environ,
        "NATS_URL": nats_url,
        "DATABASE_URL": database_url,
        "CHECKOUT_DATA_DIR": str(tmp_path),
        "CHECKOUT_EVENTS_STREAM": layout.events_stream,
        "CHECKOUT_EVENTS_PREFIX": layout.events_prefix,
        "CHECKOUT_COMMANDS_STREAM": layout.commands_stream,
        "CHECKOUT_COMMANDS_PREFIX": layout.commands_prefix,
        "COLUMNS": "400",
    }
    up = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from orchestrator.cli import app; app()",
        "up", "--role", "commands", "--workers", str(WORKERS),
        env=environment, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    nc = await nats.connect(nats_url)
    try:
        line = (await asyncio.wait_for(up.stdout.readline(), 60)).decode()
        assert f"up (commands, {WORKERS} command workers)" in line
        workers = [up.pid, *_children(up.pid)]
        assert len(workers) == WORKERS
        js = nc.jetstream()

        async def pulls_waiting():
            info = await js.consumer_info(layout.commands_stream, DURABLE)
            return info.num_waiting if info.num_waiting >= WORKERS else None

        assert await wait_until(pulls_waiting, 15, what="a waiting pull per worker") == WORKERS
        async with await CheckoutClient.connect(nats_url, layout) as client:
            replies = await asyncio.gather(
                *(client.create_session(currency="EUR", amount=100, session_id=new_session_id())
                  for _ in range(20))
            )  # fmt: skip
        assert all(reply.appended == 1 for reply in replies)
        up.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(up.wait(), 30) == 0
        assert _alive(workers[1:]) == []
    finally:
        if up.returncode is None:
            up.kill()
            await up.wait()
        await nc.close()
