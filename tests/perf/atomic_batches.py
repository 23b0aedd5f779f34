"""Raw nats-py: ADR-50 atomic batches (2 messages each) per second at concurrency 1, 8, 32.

Usage: python tests/perf/atomic_batches.py [--memory]
"""

import asyncio
import sys
import tempfile
import time
import uuid

import nats
from nats.js.api import StorageType, StreamConfig

from orchestrator.embedded import EmbeddedNats


async def _batch(nc: nats.NATS, key: str) -> None:
    batch_id = uuid.uuid4().hex
    first = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "1"}
    last = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "2", "Nats-Batch-Commit": "1"}
    await nc.publish(f"b.{key}.a", b"1", headers=first)
    reply = await nc.request(f"b.{key}.b", b"2", headers=last, timeout=5)
    assert b"error" not in reply.data, reply.data


async def _rate(nc: nats.NATS, concurrency: int, count: int = 600) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        async with limit:
            await _batch(nc, key)

    started = time.perf_counter()
    await asyncio.gather(*(one(f"c{concurrency}x{i}") for i in range(count)))
    return count / (time.perf_counter() - started)


async def main(url: str, storage: StorageType) -> None:
    nc = await nats.connect(url)
    config = StreamConfig(name="B", subjects=["b.>"], storage=storage, allow_atomic=True)
    await nc.jetstream().add_stream(config)
    for concurrency in (1, 8, 32):
        rate = await _rate(nc, concurrency)
        print(f"{storage.value} storage, concurrency {concurrency}: {rate:,.0f} batches/s")
    await nc.close()


if __name__ == "__main__":
    storage = StorageType.MEMORY if "--memory" in sys.argv else StorageType.FILE
    with tempfile.TemporaryDirectory() as directory, EmbeddedNats(directory) as server:
        asyncio.run(main(server.url, storage))
