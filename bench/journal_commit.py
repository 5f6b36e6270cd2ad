"""Journal group commit alone: add-to-durable latency of paced records, fsync on, no broker.

Compares this checkout's journal with another checkout's journal.py (the peer, e.g. the
commit before the pipelined journal), alternating them in one run on the same disk, so a
busy machine weighs on both alike. Records are added on a 1 ms timer at `--rate` a second,
as a broker's SENDs arrive; latency runs from the add to the future's completion.
`--busy-ms` keeps the loop busy that long after each tick's adds (a broker's loop has other
work: decoding, dispatch), `--fsync-ms` adds that much to every fsync (a slower disk).

    python bench/journal_commit.py --peer /path/to/other/src/taureau/storage/bookie/journal.py
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from peers.checkout import load_module  # noqa: E402

from taureau.storage.bookie import records  # noqa: E402
from taureau.storage.bookie.files import OSFiles  # noqa: E402
from taureau.storage.bookie.journal import Journal, JournalPosition  # noqa: E402


def load_peer(path: str) -> type:
    return load_module(path, "peer_journal").Journal


class CountingFiles(OSFiles):
    def __init__(self, extra_s: float) -> None:
        self.fsyncs = 0
        self.extra_s = extra_s

    def fsync(self, handle) -> None:  # type: ignore[no-untyped-def]
        super().fsync(handle)
        if self.extra_s:
            time.sleep(self.extra_s)
        self.fsyncs += 1

    def append_all_synced(self, handle, parts) -> int:  # type: ignore[no-untyped-def]
        offset = super().append_all_synced(handle, parts)  # a round written and synced: its fsync
        if self.extra_s:
            time.sleep(self.extra_s)
        self.fsyncs += 1
        return offset


async def run(journal_cls: type, args: argparse.Namespace) -> tuple[list[float], int]:
    rate, seconds, size = args.rate, args.seconds, args.size
    directory = tempfile.mkdtemp(prefix="taureau-journal-bench-")
    files = CountingFiles(args.fsync_ms / 1000)
    journal = journal_cls(files, directory)
    list(journal.replay(JournalPosition(0, 0)))
    latencies: list[float] = []
    futures = []
    payload = b"x" * size
    began = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - began < seconds:
        due = int((now - began) * rate)
        while sent < due:
            future = journal.add(records.encode(1, sent, payload))
            future.add_done_callback(lambda f, t=time.perf_counter(): latencies.append(time.perf_counter() - t))
            futures.append(future)
            sent += 1
        spin_until = time.perf_counter() + args.busy_ms / 1000
        while time.perf_counter() < spin_until:
            pass
        await asyncio.sleep(0.001)
    await asyncio.gather(*futures)
    fsyncs = files.fsyncs
    await journal.close()
    shutil.rmtree(directory, ignore_errors=True)
    return [x * 1000 for x in latencies], fsyncs


def summary(latencies: list[float]) -> tuple[float, float, float]:
    ordered = sorted(latencies)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], ordered[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, help="another checkout's storage/bookie/journal.py")
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy-ms", type=float, default=0.0, help="loop work after each tick's adds")
    parser.add_argument("--fsync-ms", type=float, default=0.0, help="added to every fsync")
    args = parser.parse_args()
    peer = load_peer(args.peer)
    for round_ in range(1, args.rounds + 1):
        load = Path("/proc/loadavg").read_text().split()[0]
        figures = {}
        for name, cls in (("peer", peer), ("this", Journal)):
            latencies, fsyncs = asyncio.run(run(cls, args))
            figures[name] = summary(latencies)
            p50, p99, top = figures[name]
            print(f"round {round_} {name}: {len(latencies)} records, {fsyncs} fsyncs, "
                  f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {top:.2f} ms (load average {load})")
        print(f"round {round_} this/peer: p50 {figures['this'][0] / figures['peer'][0]:.2f}x, "
              f"p99 {figures['this'][1] / figures['peer'][1]:.2f}x, max {figures['this'][2] / figures['peer'][2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
