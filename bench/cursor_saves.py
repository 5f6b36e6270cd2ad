"""Cursor saves of many acking cursors: one shared timer (SaveTicker) against a timer per cursor.

N managed ledgers with one durable cursor each, on an embedded metadata store that fsyncs its
log (as a standalone's does). Every 10 ms a slice of `--rate` acknowledgements goes to cursors
picked at random, for `--seconds`. Cursors save at most once per `--interval` either way; what
differs is when: on their own timers (the peer, how every cursor saved before the ticker), or
on the factory's one ticker, which starts the due saves at each tick, 64 per loop turn. Printed
per mode: cursor saves, metadata log writes (each an fsync), CPU of this process (all threads,
the log's writer thread included) and CPU per ack, and how late a 1 ms timer fired (the loop's
lag: p99 and the longest, which is the longest stall of the loop); then the ticker's ratio to
the peer. A third mode, "ticker, one turn", starts all of a tick's saves in one loop turn, as
the ticker did before it sliced them: the peer of the longest lag. `--all-at-once` acks every
cursor each interval, as 1,000 topics at 10 msgs/s each do.

    python bench/cursor_saves.py                      # 1,000 cursors, 3,000 acks/s, 5 s, fsync on
    python bench/cursor_saves.py --cursors 5000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taureau.metadata import oplog  # noqa: E402
from taureau.metadata.embedded import EmbeddedMetadataStore  # noqa: E402
from taureau.net.server import install_fast_event_loop  # noqa: E402
from taureau.node import tune_collector  # noqa: E402
from taureau.storage.managed_ledger import (  # noqa: E402
    InitialPosition,
    ManagedLedgerConfig,
    save_ticker,
)
from taureau.storage.managed_ledger.ledger import ManagedLedgerImpl  # noqa: E402
from taureau.storage.managed_ledger.save_ticker import SaveTicker  # noqa: E402
from taureau.testing.memory_ledger import MemoryLedgerClient  # noqa: E402


class LogWrites:
    """Counts the metadata log's writes (each is one write + fsync in its thread)."""

    def __init__(self) -> None:
        self.count = 0
        original = oplog.MetadataLog._write

        def counted(log: oplog.MetadataLog, data: bytes) -> None:
            self.count += 1
            original(log, data)

        oplog.MetadataLog._write = counted  # type: ignore[method-assign]


ONE_TURN = "ticker, one turn"
SLICE = save_ticker.START_SLICE


async def lag_probe(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 1 ms sleep wakes, over and over: the loop's lag."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(0.001)
        lags.append(loop.time() - start - 0.001)


async def run(mode: str, args: argparse.Namespace, writes: LogWrites) -> dict[str, float]:
    data_dir = tempfile.mkdtemp(prefix="taureau-saves-")
    store = EmbeddedMetadataStore(data_dir, fsync=True)
    client = MemoryLedgerClient()
    ticker = SaveTicker(args.interval) if mode.startswith("ticker") else None
    save_ticker.START_SLICE = 10**9 if mode == ONE_TURN else SLICE
    cursors = []
    for i in range(args.cursors):
        ml = await ManagedLedgerImpl.open(
            f"public/default/persistent/saves-{i}", ManagedLedgerConfig(), store, client,
            cursor_persist_interval_s=args.interval, cursor_save_ticker=ticker,
        )  # fmt: skip
        cursors.append((ml, await ml.open_cursor("s", InitialPosition.EARLIEST)))
    pick = random.Random(1)
    # Acks per 10 ms slice: --rate's share, or with --all-at-once every cursor once per interval.
    per_slice = max(1, round(len(cursors) * 0.01 / args.interval) if args.all_at_once else args.rate // 100)
    await asyncio.sleep(args.interval)  # the creations' saves are done
    writes.count = 0
    acks = 0
    lags: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.ensure_future(lag_probe(lags, stop))
    cpu0, t0 = time.process_time(), time.monotonic()
    while time.monotonic() - t0 < args.seconds:
        chosen = cursors if args.all_at_once else [pick.choice(cursors) for _ in range(per_slice)]
        for i, (ml, cursor) in enumerate(chosen):
            position = await ml.add_entry(b"x")
            cursor.mark_delete_now(position)
            acks += 1
            if i % per_slice == per_slice - 1:  # one 10 ms pause per slice
                await asyncio.sleep(0.01)
    wall, cpu = time.monotonic() - t0, time.process_time() - cpu0
    stop.set()
    await probe
    lags.sort()
    result = {
        "acks": acks,
        "saves": sum(c.saves for _, c in cursors),
        "writes_per_s": writes.count / wall,
        "cpu_pct": 100 * cpu / wall,
        "us_per_ack": 1e6 * cpu / acks,
        "lag_p99_ms": 1e3 * lags[int(0.99 * (len(lags) - 1))],
        "lag_max_ms": 1e3 * lags[-1],
    }
    for ml, _ in cursors:
        await ml.close()
    await store.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return result


async def main(args: argparse.Namespace) -> None:
    # As a server does once it is ready (its topics, made later, stay in the collector's view).
    tune_collector()
    writes = LogWrites()
    results: dict[str, list[dict[str, float]]] = {"per-cursor timers": [], ONE_TURN: [], "ticker": []}
    for r in range(args.rounds):
        order = list(results) if r % 2 == 0 else list(reversed(results))
        for mode in order:
            res = await run(mode, args, writes)
            results[mode].append(res)
            print(
                f"{mode:>17}: {args.cursors:,} cursors, {res['acks']:,.0f} acks: {res['saves']:,.0f} cursor saves, "
                f"{res['writes_per_s']:,.1f} metadata log writes/s, CPU {res['cpu_pct']:.0f}% of a core, "
                f"{res['us_per_ack']:.1f} us per ack, loop lag p99 {res['lag_p99_ms']:.1f} ms, "
                f"longest {res['lag_max_ms']:.1f} ms",
                flush=True,
            )
    comparisons = (
        ("per-cursor timers", "writes_per_s", "metadata log writes"),
        ("per-cursor timers", "us_per_ack", "CPU per ack"),
        (ONE_TURN, "lag_max_ms", "longest loop lag"),
    )
    for peer_mode, key, label in comparisons:
        peer = sum(r[key] for r in results[peer_mode]) / args.rounds
        ours = sum(r[key] for r in results["ticker"]) / args.rounds
        if peer > 0:
            print(f"ticker against {peer_mode} in this run: {ours / peer:.3f}x the {label}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cursors", type=int, default=1000)
    ap.add_argument("--rate", type=int, default=3000, help="acks per second over all cursors")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=1.0, help="cursor save interval (the broker's default: 1 s)")
    ap.add_argument("--rounds", type=int, default=1, help="each mode this many times, alternating")
    ap.add_argument(
        "--all-at-once",
        action="store_true",
        help="ack every cursor once per interval (--rate is ignored): all of them save at each tick",
    )
    args = ap.parse_args()
    install_fast_event_loop()  # the server's loop
    asyncio.run(main(args))
