"""How late the event loop runs while a bookie checkpoint writes its index in a thread.

A checkpoint hands the entries added since the last one (300,000 at 10k adds/s every 30 s)
to a worker thread, which writes their locations to the index's sqlite file. Whatever that
thread does while holding the GIL delays the event loop: this bench fills an index, commits
it with `asyncio.to_thread` as the bookie does, and samples a 1 ms timer on the loop
meanwhile. `--peer` names another checkout's index.py (e.g. the commit before the run-based
memtable), measured in the same run, alternated round by round, and the ratio printed.

    python bench/checkpoint_lag.py --entries 300000 --peer /path/to/other/src/taureau/storage/bookie/index.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from peers.checkout import load_module  # noqa: E402

from taureau.storage.bookie import index as this_index  # noqa: E402
from taureau.storage.bookie.kv import SqliteKV  # noqa: E402

TICK_S = 0.001


async def one_round(module: ModuleType, entries: int, directory: str) -> tuple[float, float, float]:
    """(commit seconds, loop lag p99, loop lag max) for one checkpoint of `entries` adds."""
    kv = SqliteKV(os.path.join(directory, f"index-{time.monotonic_ns()}.db"))
    index = module.Index(kv)
    index.info(7)
    for entry_id in range(entries):  # one ledger, in order: what a bookie's adds look like
        index.put(7, entry_id, entry_id * 120)
    index.changed(7)
    cut = index.cut({1: entries * 120}, {1: {7}}, [], b"\0" * 16)
    lags: list[float] = []
    started = time.perf_counter()
    commit = asyncio.ensure_future(asyncio.to_thread(index.commit, cut))
    while not commit.done():
        due = time.perf_counter() + TICK_S
        await asyncio.sleep(TICK_S)
        lags.append(max(time.perf_counter() - due, 0.0))
    await commit
    took = time.perf_counter() - started
    index.committed()
    kv.close()
    lags.sort()
    return took, lags[int(len(lags) * 0.99)], lags[-1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=300_000, help="adds since the last checkpoint")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer", required=True, help="another checkout's src/taureau/storage/bookie/index.py")
    args = parser.parse_args()
    contenders = [("this checkout", this_index), ("peer", load_module(args.peer, "peer_index"))]
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in contenders}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as directory:
        for r in range(args.rounds):
            for name, module in contenders:
                took, p99, worst = await one_round(module, args.entries, directory)
                results[name].append((took, p99, worst))
                print(f"round {r + 1} {name}: commit {took * 1000:.0f} ms, loop lag p99 {p99 * 1000:.2f} ms, "
                      f"max {worst * 1000:.2f} ms", flush=True)
    medians = {name: [statistics.median(x[i] for x in rows) for i in range(3)] for name, rows in results.items()}
    for name, (took, p99, worst) in medians.items():
        print(f"{name} (median of {args.rounds}): commit {took * 1000:.0f} ms, loop lag p99 {p99 * 1000:.2f} ms, "
              f"max {worst * 1000:.2f} ms")
    mine, peer = medians["this checkout"], medians["peer"]
    print(f"loop lag max: this checkout / peer = {mine[2] / peer[2]:.2f}x; "
          f"p99 {mine[1] / peer[1]:.2f}x; commit time {mine[0] / peer[0]:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
