"""Managed-ledger hot paths on the in-memory ledger: adds/s and tail-read entries/s.

Run: /work/venv/bin/python tests/storage/managed_ledger/bench_ml.py [--uvloop] (not collected by pytest).
"""

from __future__ import annotations

import asyncio
import time

from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.storage.managed_ledger import InitialPosition, ManagedLedgerConfig, ManagedLedgerFactory
from taureau.testing.memory_ledger import MemoryLedgerClient

N = 200_000
PAYLOAD = b"x" * 100


async def _ml(yield_on_add: bool):
    factory = ManagedLedgerFactory(
        EmbeddedMetadataStore(), MemoryLedgerClient(yield_on_add=yield_on_add), ManagedLedgerConfig()
    )
    return factory, await factory.open("bench/ns/persistent/t")


async def bench_sequential_adds(yield_on_add: bool) -> float:
    factory, ml = await _ml(yield_on_add)
    add = ml.add_entry
    start = time.perf_counter()
    for _ in range(N):
        await add(PAYLOAD)
    rate = N / (time.perf_counter() - start)
    await factory.close()
    return rate


async def bench_concurrent_adds(yield_on_add: bool, window: int = 1000) -> float:
    factory, ml = await _ml(yield_on_add)
    start = time.perf_counter()
    for _ in range(N // window):
        await asyncio.gather(*[ml.add_entry(PAYLOAD) for _ in range(window)])
    rate = N / (time.perf_counter() - start)
    await factory.close()
    return rate


async def bench_tail_reads(batch: int = 100) -> tuple[float, float]:
    """A producer adds 1000 entries, the tailing cursor reads them in batches; repeat."""
    factory, ml = await _ml(False)
    cursor = await ml.open_cursor("tail", InitialPosition.LATEST)
    read = 0
    read_time = 0.0
    start = time.perf_counter()
    for _ in range(N // 1000):
        for _ in range(1000):
            await ml.add_entry(PAYLOAD)
        t0 = time.perf_counter()
        while entries := await cursor.read_entries(batch):
            read += len(entries)
            await cursor.mark_delete(entries[-1].position)
        read_time += time.perf_counter() - t0
    total = time.perf_counter() - start
    assert read == N and ml._reader.ledger_reads == 0
    await factory.close()
    return read / read_time, N / total


async def main() -> None:
    print(f"sequential adds, no yield in ledger : {await bench_sequential_adds(False):>10,.0f} adds/s")
    print(f"sequential adds, ledger yields once : {await bench_sequential_adds(True):>10,.0f} adds/s")
    print(f"1000 concurrent adds, ledger yields : {await bench_concurrent_adds(True):>10,.0f} adds/s")
    reads, both = await bench_tail_reads()
    print(f"tail reads (batch 100, + mark_delete): {reads:>10,.0f} entries/s")
    print(f"add + tail read + ack, end to end    : {both:>10,.0f} entries/s")


if __name__ == "__main__":
    import sys

    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
