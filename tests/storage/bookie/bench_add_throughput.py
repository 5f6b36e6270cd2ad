"""Benchmark (not a test): bookie add_entry throughput, 100-byte entries, many in flight.

Run: /work/venv/bin/python tests/storage/bookie/bench_add_throughput.py [entries] [in_flight] [--no-fsync]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from taureau.storage.bookie import Bookie


async def main(total: int, in_flight: int, fsync: bool) -> None:
    with tempfile.TemporaryDirectory(dir=".") as data_dir:
        bookie = Bookie(data_dir, journal_fsync=fsync, checkpoint_interval_s=None)
        await bookie.start()
        data = b"x" * 100
        per_writer = total // in_flight

        async def writer(w: int) -> None:
            for i in range(per_writer):
                await bookie.add_entry(w % 8, w * per_writer + i, data)

        start = time.perf_counter()
        await asyncio.gather(*(writer(w) for w in range(in_flight)))
        elapsed = time.perf_counter() - start
        done = per_writer * in_flight
        print(f"add_entry: {done / elapsed:,.0f}/s ({done} x 100 B, {in_flight} in flight, fsync={fsync})")
        start = time.perf_counter()
        await bookie.checkpoint()
        print(f"checkpoint of {done} entries: {time.perf_counter() - start:.2f} s")
        await bookie.close()


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(
        main(
            int(args[0]) if args else 300_000,
            int(args[1]) if len(args) > 1 else 1000,
            "--no-fsync" not in sys.argv,
        )
    )
