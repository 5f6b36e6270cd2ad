"""Auto-recovery on real processes: three `taureau bookie` processes and a real ZooKeeper,
E2/Qw2/Qa2 ledgers written, kill -9 of the bookie that is the auditor. After the recovery
delay no ledger names it (closed ledgers, and the earlier segment of a ledger still being
written, whose writer goes on and closes it), and every entry is read back with either of
the two bookies left killed in turn."""

from __future__ import annotations

import asyncio
import time

import pytest

from taureau.metadata.zookeeper import ZooKeeperMetadataStore
from taureau.storage.ledger import LedgerState
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger import underreplication as ur
from taureau.storage.ledger.cluster import ClusterLedgerClient
from taureau.storage.ledger.registry import available_bookies
from tests.e2e.bookies import BookieProcess

pytestmark = pytest.mark.anyio

RECOVERY = ("--lost-bookie-recovery-delay", "1", "--audit-interval", "2")


async def _until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        await asyncio.sleep(0.2)


async def _read_everything(zk_url: str, expected: dict[int, list[bytes]]) -> None:
    store = await ZooKeeperMetadataStore.open(zk_url)
    client = ClusterLedgerClient(store, request_timeout_s=10)
    try:
        for ledger_id, entries in expected.items():
            reader = await client.open_ledger(ledger_id)
            assert reader.last_add_confirmed == len(entries) - 1
            assert await reader.read_entries(0, len(entries) - 1) == entries
    finally:
        await client.close()
        await store.close()


async def test_ledgers_of_a_lost_bookie_are_re_replicated_onto_the_others(tmp_path, zk_url):
    procs = [BookieProcess(tmp_path / f"bookie-{i}", zk_url, *RECOVERY) for i in range(3)]
    await asyncio.gather(*(asyncio.to_thread(p.start) for p in procs))
    by_id = {p.bookie_id: p for p in procs}
    store = await ZooKeeperMetadataStore.open(zk_url)
    client = ClusterLedgerClient(store, request_timeout_s=10)
    try:
        async def elected() -> bool:
            return await store.get(ur.AUDITOR) is not None

        await _until(elected, "an auditor elected")
        victim = by_id[(await store.get(ur.AUDITOR))[0].decode().split()[0]]  # the auditor itself is lost

        expected: dict[int, list[bytes]] = {}
        for _ in range(6):  # ensembles rotate over the three: every pair twice
            ledger = await client.create_ledger(2, 2, 2)
            data = [b"%d-%d" % (ledger.ledger_id, i) for i in range(100)]
            await ledger.add_entries(data)
            await ledger.close()
            expected[ledger.ledger_id] = data
        open_ledger = await client.create_ledger(2, 2, 2)
        while victim.bookie_id not in open_ledger.metadata.ensemble:
            await open_ledger.close()
            expected[open_ledger.ledger_id] = []
            open_ledger = await client.create_ledger(2, 2, 2)
        written = [b"open-%d" % i for i in range(300)]
        await open_ledger.add_entries(written[:100])

        await asyncio.to_thread(victim.kill)
        for data in written[100:200]:  # the writer changes its ensemble away from the victim
            await open_ledger.add_entry(data)
        assert victim.bookie_id in open_ledger.metadata.ensembles[0][1]
        assert victim.bookie_id not in open_ledger.metadata.ensemble

        async def healed() -> bool:
            for ledger_id in expected:
                found = await store.get(fmt.ledger_path(ledger_id))
                assert found is not None
                if victim.bookie_id in fmt.decode_metadata(found[0]).all_bookies():
                    return False
            return await store.children(ur.MARKS) == []

        await _until(healed, "every ledger re-replicated off the lost bookie and unmarked")
        # The writer of the OPEN ledger goes on and closes it over the re-replicated segment.
        for data in written[200:]:
            await open_ledger.add_entry(data)
        await open_ledger.close()
        closed = fmt.decode_metadata((await store.get(fmt.ledger_path(open_ledger.ledger_id)))[0])
        assert closed.state is LedgerState.CLOSED and closed.last_entry_id == 299
        assert victim.bookie_id not in closed.all_bookies()
        expected[open_ledger.ledger_id] = written
        expected = {k: v for k, v in expected.items() if v}

        # Either of the two bookies left holds every entry alone: kill one, read, bring it
        # back, kill the other, read.
        first, second = (p for p in procs if p is not victim)
        for down in (first, second):
            await asyncio.to_thread(down.kill)

            async def left(proc: BookieProcess = down) -> bool:
                return proc.bookie_id not in await available_bookies(store)

            await _until(left, f"{down.bookie_id} leaves the registry")
            await _read_everything(zk_url, expected)
            await asyncio.to_thread(down.start)
    finally:
        await client.close()
        await store.close()
        for p in procs:
            p.kill()


@pytest.mark.parametrize("flags", [
    ["--lost-bookie-recovery-delay", "-1"], ["--lost-bookie-recovery-delay", "soon"], ["--audit-interval", "0"],
])
def test_bookie_recovery_flags_are_checked_before_connecting(tmp_path, flags):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", "bookie", "--metadata-store", "zk://127.0.0.1:9/x",
         "--data-dir", str(tmp_path), *flags],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2, out.stderr
    assert flags[0] in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()[-1]) > 0
