"""Auto-recovery: how fast the bookies re-replicate what a lost bookie held, against
`taureau recover-bookies` (the same copy run by hand) measured in the same run.

Each case starts a private ZooKeeper (Debian's `zookeeper` package) and three `taureau
bookie` processes, writes LEDGERS closed E2/Qw2/Qa2 ledgers of ENTRIES entries (so the
three pairs of bookies hold them in turn, two thirds of them on any one bookie), and kills
one bookie with SIGKILL (2 s sessions). Auto: bookies with auto-recovery (delay 0); the
time is from the moment the lost bookie leaves the registry (its session expired) until no
ledger names it and no mark is left. Peer: bookies with --no-autorecovery, and
`recover-bookies` (bookie_server.recover_bookies, what the verb runs) timed alone, after the
bookie left. Printed: entries copied per second each way, and auto as a ratio of the peer.

    python bench/autorecovery.py                       # 30 ledgers of 1,000 entries of 1 KiB
    python bench/autorecovery.py --ledgers 60 --entries 2000 --size 4096
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taureau.bookie_server import recover_bookies  # noqa: E402
from taureau.metadata.zookeeper import ZooKeeperMetadataStore  # noqa: E402
from taureau.storage.ledger import format as fmt  # noqa: E402
from taureau.storage.ledger import underreplication as ur  # noqa: E402
from taureau.storage.ledger.cluster import ClusterLedgerClient  # noqa: E402
from taureau.storage.ledger.registry import available_bookies  # noqa: E402
from taureau.testing.zookeeper import ZooKeeperServer  # noqa: E402
from tests.e2e.bookies import BookieProcess  # noqa: E402


async def _write(url: str, ledgers: int, entries: int, size: int) -> tuple[list[int], float]:
    store = await ZooKeeperMetadataStore.open(url)
    client = ClusterLedgerClient(store)
    ids = []
    started = time.monotonic()
    for _ in range(ledgers):
        ledger = await client.create_ledger(2, 2, 2)
        for first in range(0, entries, 100):
            await ledger.add_entries([b"x" * size] * min(100, entries - first))
        await ledger.close()
        ids.append(ledger.ledger_id)
    took = time.monotonic() - started
    await client.close()
    await store.close()
    return ids, took


async def _held_by(url: str, ids: list[int], bookie: str) -> int:
    """Entries of `ids` whose write set names `bookie` (what its loss leaves to copy)."""
    store = await ZooKeeperMetadataStore.open(url)
    count = 0
    for ledger_id in ids:
        md = fmt.decode_metadata((await store.get(fmt.ledger_path(ledger_id)))[0])
        if bookie in md.all_bookies():
            count += md.last_entry_id + 1
    await store.close()
    return count


async def _wait_gone(url: str, bookie: str) -> None:
    store = await ZooKeeperMetadataStore.open(url)
    while bookie in await available_bookies(store):
        await asyncio.sleep(0.05)
    await store.close()


async def _wait_healed(url: str, ids: list[int], bookie: str) -> None:
    store = await ZooKeeperMetadataStore.open(url)
    pending = list(ids)
    while pending or await store.children(ur.MARKS):
        still = []
        for ledger_id in pending:
            md = fmt.decode_metadata((await store.get(fmt.ledger_path(ledger_id)))[0])
            if bookie in md.all_bookies():
                still.append(ledger_id)
        pending = still
        await asyncio.sleep(0.05)
    await store.close()


def case(root: Path, zk: ZooKeeperServer, name: str, auto: bool, ledgers: int, entries: int, size: int) -> float:
    url = f"{zk.url}/{'auto' if auto else 'by-hand'}"
    flags = ("--lost-bookie-recovery-delay", "0") if auto else ("--no-autorecovery",)
    bookies = [BookieProcess(root / f"{url.rsplit('/', 1)[1]}-{i}", url, *flags).start() for i in range(3)]
    try:
        ids, wrote = asyncio.run(_write(url, ledgers, entries, size))
        victim = bookies[1]
        copies = asyncio.run(_held_by(url, ids, victim.bookie_id))
        victim.kill()
        asyncio.run(_wait_gone(url, victim.bookie_id))
        started = time.monotonic()
        if auto:
            asyncio.run(_wait_healed(url, ids, victim.bookie_id))
        else:
            copied, problems = asyncio.run(recover_bookies(url))
            assert not problems and sum(c.entries for c in copied) == copies, (problems, copied)
        took = time.monotonic() - started
        rate = copies / took
        print(f"{name:28s} {copies:7d} entries copied in {took:6.2f} s  {rate:9.0f} entries/s"
              f"   (written at {ledgers * entries / wrote:,.0f} entries/s)")
        return rate
    finally:
        for b in bookies:
            b.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ledgers", type=int, default=30)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    a = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="taureau-autorecovery-bench-"))
    zk = ZooKeeperServer(str(root / "zk"))
    zk.start()
    try:
        peer = case(root, zk, "recover-bookies (by hand)", False, a.ledgers, a.entries, a.size)
        auto = case(root, zk, "auto-recovery", True, a.ledgers, a.entries, a.size)
        print(f"auto-recovery / recover-bookies: {auto / peer:.2f}x")
    finally:
        zk.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
