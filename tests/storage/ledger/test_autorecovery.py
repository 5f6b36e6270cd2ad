"""Auto-recovery in process: the auditor marks what a lost bookie leaves under-replicated after
the delay, replication workers copy it and remove the mark, a writer of an OPEN ledger adopts
its re-replicated earlier segments, and one auditor is elected. Real bookies (on CrashFiles,
so a test can make one fail) and a real metadata store; the auditor's clock is the test's."""

from __future__ import annotations

import asyncio
import errno
import json

import pytest

from taureau.common.errors import LedgerFencedError
from taureau.metadata.zookeeper import ZooKeeperMetadataStore
from taureau.storage.ledger import BookKeeperClient, LedgerState
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger import underreplication as ur
from taureau.storage.ledger.auditor import Auditor
from taureau.storage.ledger.autorecovery import AutoRecovery, AutoRecoveryConfig
from taureau.storage.ledger.registry import AVAILABLE, available_bookies
from taureau.storage.ledger.replication_worker import ReplicationWorker
from tests.storage.ledger.conftest import Cluster

pytestmark = pytest.mark.anyio

A, B, C, D = (f"10.0.0.{i}:3181" for i in range(1, 5))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Bookies(Cluster):
    """Real in-process bookies under address ids, registered in a real (embedded) store."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(len(ids), ids)

    async def start(self) -> Bookies:
        await super().start()
        for bookie_id in self.bookies:
            await self.register(bookie_id)
        return self

    async def register(self, bookie_id: str) -> None:
        await self.store.put(f"{AVAILABLE}/{bookie_id}", b"{}", ephemeral=True)

    async def lose(self, bookie_id: str) -> None:
        await self.store.delete(f"{AVAILABLE}/{bookie_id}")

    async def source(self):
        return self.bookies, sorted(await available_bookies(self.store))

    def worker(self) -> ReplicationWorker:
        return ReplicationWorker(self.store, self.source, "test-worker")

    async def closed_ledger(self, client: BookKeeperClient, ensemble: list[str], entries: int) -> int:
        ledger = await client.create_ledger(2, 2, 2)
        assert ledger.metadata.ensemble == ensemble
        await ledger.add_entries([b"%d-%d" % (ledger.ledger_id, i) for i in range(entries)])
        await ledger.close()
        return ledger.ledger_id

    async def metadata(self, ledger_id: int):
        found = await self.store.get(fmt.ledger_path(ledger_id))
        assert found is not None
        return fmt.decode_metadata(found[0])


async def _read_all(store, bookies, ledger_id: int) -> list[bytes]:
    reader = await BookKeeperClient(store, bookies).open_ledger(ledger_id)
    return await reader.read_entries(0, reader.last_add_confirmed)


async def test_the_auditor_marks_after_the_delay_and_the_worker_copies_and_unmarks():
    cluster = await Bookies([A, B, C]).start()
    client = BookKeeperClient(cluster.store, cluster.bookies)  # ensembles rotate: [A,B] [B,C] [C,A]
    on_ab = await cluster.closed_ledger(client, [A, B], 50)
    on_bc = await cluster.closed_ledger(client, [B, C], 50)
    on_ca = await cluster.closed_ledger(client, [C, A], 50)
    clock = Clock()
    auditor = Auditor(cluster.store, lost_bookie_recovery_delay_s=5, check_interval_s=1000, clock=clock)
    assert await auditor.audit() > 0 and await ur.marked(cluster.store) == []
    await cluster.lose(B)
    clock.now = 1.0
    assert await auditor.audit() == pytest.approx(5.0)  # wakes when B's delay is over
    clock.now = 5.9
    await auditor.audit()
    assert await ur.marked(cluster.store) == []  # not yet: B may come back
    clock.now = 6.0
    await auditor.audit()
    assert await ur.marked(cluster.store) == [on_ab, on_bc]
    raw, _ = await cluster.store.get(ur.mark_path(on_ab))
    assert json.loads(raw)["lost"] == [B]

    copied = await cluster.worker().work_once()
    assert sorted((c.ledger_id, c.lost, c.replacement, c.entries) for c in copied) == [
        (on_ab, B, C, 50), (on_bc, B, A, 50)
    ]
    assert await ur.marked(cluster.store) == []
    for ledger_id in (on_ab, on_bc, on_ca):
        assert B not in (await cluster.metadata(ledger_id)).all_bookies()
    # Each surviving bookie alone now holds every entry of every ledger.
    for alone in (A, C):
        for ledger_id in (on_ab, on_bc, on_ca):
            entries = await _read_all(cluster.store, {alone: cluster.bookies[alone]}, ledger_id)
            assert entries == [b"%d-%d" % (ledger_id, i) for i in range(50)]
    # A wake-up (a registration change) does not read every ledger again for B...
    checks = auditor.checks
    clock.now = 7.0
    await auditor.audit()
    assert auditor.checks == checks
    # ...the next periodic check does, and forgets B, which no ledger names any more.
    clock.now = 1006.0
    await auditor.audit()
    assert auditor.checks == checks + 1 and auditor.lost_since == {}


async def test_a_bookie_back_within_the_delay_costs_no_copying():
    cluster = await Bookies([A, B, C]).start()
    client = BookKeeperClient(cluster.store, cluster.bookies)
    await cluster.closed_ledger(client, [A, B], 10)
    clock = Clock()
    auditor = Auditor(cluster.store, lost_bookie_recovery_delay_s=30, check_interval_s=1000, clock=clock)
    await auditor.audit()
    await cluster.lose(A)
    clock.now = 1.0
    await auditor.audit()
    assert A in auditor.lost_since
    await cluster.register(A)  # a restart
    clock.now = 40.0
    await auditor.audit()
    assert auditor.lost_since == {} and await ur.marked(cluster.store) == []


async def test_a_writer_adopts_its_reReplicated_earlier_segment_and_goes_on():
    cluster = await Bookies([A, B, C, D]).start()
    writer_client = BookKeeperClient(cluster.store, cluster.bookies)
    ledger = await writer_client.create_ledger(2, 2, 2)
    assert ledger.metadata.ensemble == [A, B]
    for i in range(10):
        await ledger.add_entry(b"e%d" % i)
    cluster.files[B].inject("append", errno.ENOSPC, times=None)  # B fails: the writer moves to C
    for i in range(10, 20):
        await ledger.add_entry(b"e%d" % i)
    assert ledger.metadata.ensembles == [(0, [A, B]), (10, [A, C])]
    await cluster.lose(B)
    clock = Clock()
    auditor = Auditor(cluster.store, lost_bookie_recovery_delay_s=0, check_interval_s=1000, clock=clock)
    await auditor.audit()  # B is named but not registered: lost from now
    await auditor.audit()
    assert await ur.marked(cluster.store) == [ledger.ledger_id]  # OPEN, but its first segment is done
    copied = await cluster.worker().work_once()
    assert [(c.lost, c.replacement, c.entries) for c in copied] == [(B, C, 10)]
    stored = await cluster.metadata(ledger.ledger_id)
    assert stored.state is LedgerState.OPEN and stored.ensembles == [(0, [A, C]), (10, [A, C])]
    # The writer's metadata is stale now; its next ensemble change adopts the copy, then writes.
    cluster.files[C].inject("append", errno.ENOSPC, times=None)
    for i in range(20, 30):
        await ledger.add_entry(b"e%d" % i)
    assert ledger.metadata.ensembles == [(0, [A, C]), (10, [A, C]), (20, [A, D])]
    for i in range(30, 35):
        await ledger.add_entry(b"e%d" % i)
    await ledger.close()
    closed = await cluster.metadata(ledger.ledger_id)
    assert closed.state is LedgerState.CLOSED and closed.last_entry_id == 34
    assert B not in closed.all_bookies()
    assert await ur.marked(cluster.store) == []
    # Without A (B's partner in the first segment), C and D hold every entry.
    survivors = {b: cluster.bookies[b] for b in (C, D)}
    assert await _read_all(cluster.store, survivors, ledger.ledger_id) == [b"e%d" % i for i in range(35)]


async def test_a_writer_closes_after_its_earlier_segment_was_reReplicated():
    cluster = await Bookies([A, B, C]).start()
    ledger = await BookKeeperClient(cluster.store, cluster.bookies).create_ledger(2, 2, 2)
    await ledger.add_entries([b"a", b"b"])
    cluster.files[B].inject("append", errno.ENOSPC, times=None)
    await ledger.add_entry(b"c")
    await cluster.lose(B)
    auditor = Auditor(cluster.store, clock=Clock())
    await auditor.audit()
    await auditor.audit()
    assert len(await cluster.worker().work_once()) == 1
    await ledger.add_entry(b"d")
    await ledger.close()  # its compare-and-set fails once, then adopts the copy and closes
    closed = await cluster.metadata(ledger.ledger_id)
    assert closed.state is LedgerState.CLOSED and closed.ensembles == [(0, [A, C]), (2, [A, C])]
    assert await _read_all(cluster.store, {C: cluster.bookies[C]}, ledger.ledger_id) == [b"a", b"b", b"c", b"d"]


async def test_a_recovery_still_fences_a_writer_whose_metadata_changed():
    cluster = await Bookies([A, B, C]).start()
    ledger = await BookKeeperClient(cluster.store, cluster.bookies).create_ledger(2, 2, 2)
    await ledger.add_entry(b"x")
    await BookKeeperClient(cluster.store, cluster.bookies).open_ledger(ledger.ledger_id)  # recovered, closed
    with pytest.raises(LedgerFencedError):
        await ledger.add_entry(b"y")


async def test_bad_marks_and_bad_ledger_metadata_are_skipped_and_the_rest_is_fixed():
    cluster = await Bookies([A, B, C]).start()
    client = BookKeeperClient(cluster.store, cluster.bookies)
    good = await cluster.closed_ledger(client, [A, B], 5)
    await cluster.store.put(fmt.ledger_path(9000), b"{not json")  # corrupt ledger metadata
    await cluster.store.put(f"{ur.MARKS}/not-a-ledger", b"x")
    await cluster.store.put(ur.mark_path(9000), b"\xff garbage")
    await cluster.store.put(ur.mark_path(9001), b"{}")  # a ledger that does not exist
    await cluster.lose(B)
    auditor = Auditor(cluster.store, clock=Clock())
    await auditor.audit()
    await auditor.audit()  # the corrupt ledger is skipped, the good one marked
    assert await ur.marked(cluster.store) == [good, 9000, 9001]
    copied = await cluster.worker().work_once()
    assert [(c.ledger_id, c.entries) for c in copied] == [(good, 5)]
    # The corrupt one keeps its mark (nothing can fix it here), the missing one lost it.
    assert await ur.marked(cluster.store) == [9000]
    assert await cluster.store.children(ur.LOCKS) == []  # every lock released
    assert B not in (await cluster.metadata(good)).all_bookies()
    # A mark whose body is unreadable is rewritten whole by the next mark.
    assert await ur.mark(cluster.store, 9000, {B}) is True
    assert json.loads((await cluster.store.get(ur.mark_path(9000)))[0])["lost"] == [B]


async def test_no_bookie_to_copy_onto_keeps_the_mark_for_later():
    cluster = await Bookies([A, B]).start()
    ledger_id = await cluster.closed_ledger(BookKeeperClient(cluster.store, cluster.bookies), [A, B], 5)
    await cluster.lose(B)
    auditor = Auditor(cluster.store, clock=Clock())
    await auditor.audit()
    await auditor.audit()
    assert await cluster.worker().work_once() == []
    assert await ur.marked(cluster.store) == [ledger_id]
    assert await cluster.store.children(ur.LOCKS) == []
    await cluster.register(B)  # back after all: whole again, the mark goes
    await cluster.worker().work_once()
    assert await ur.marked(cluster.store) == []


async def test_one_auditor_is_elected_and_another_takes_over_when_its_session_ends(zk_url):
    stores = [await ZooKeeperMetadataStore.open(zk_url) for _ in range(2)]

    async def nothing():
        return {}, []

    config = AutoRecoveryConfig(check_interval_s=0.5)
    recoveries = [AutoRecovery(s, nothing, f"10.0.0.{i}:3181", config) for i, s in enumerate(stores)]
    for r in recoveries:
        r.start()

    async def until(predicate) -> None:
        for _ in range(200):
            if predicate():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("condition not reached in 10 s")

    await until(lambda: sum(r.is_auditor for r in recoveries) == 1)
    await asyncio.sleep(1.0)
    assert sum(r.is_auditor for r in recoveries) == 1  # still one
    first = next(i for i, r in enumerate(recoveries) if r.is_auditor)
    holder = await stores[1 - first].get(ur.AUDITOR)
    assert holder is not None and holder[0].split()[0] == f"10.0.0.{first}:3181".encode()
    # Its session ends without a word (as a process killed): the node goes with it.
    await stores[first].close()
    await until(lambda: recoveries[1 - first].is_auditor)
    await recoveries[1 - first].close()
    assert await stores[1 - first].get(ur.AUDITOR) is None  # a clean stop hands it over at once
    await recoveries[first].close()  # its tasks; its store is closed already
    await stores[1 - first].close()


async def test_a_copy_reads_past_a_member_that_lacks_entries():
    """A bookie of the segment that missed entries (dropped from the write set, no spare)
    answers a ranged read short: the rest is read entry by entry from whoever has it."""
    from taureau.storage.ledger.rereplicate import rereplicate_ledger

    cluster = await Bookies([A, B, C, D]).start()
    writer = BookKeeperClient(cluster.store, {b: cluster.bookies[b] for b in (A, B, C)})  # no spare
    ledger = await writer.create_ledger(3, 3, 2)
    for i in range(10):
        await ledger.add_entry(b"e%d" % i)
    cluster.files[B].inject("append", errno.ENOSPC, times=None)  # B misses everything from here
    for i in range(10, 30):
        await ledger.add_entry(b"e%d" % i)
    await ledger.close()
    assert ledger.metadata.ensembles == [(0, [A, B, C])]
    copied = await rereplicate_ledger(cluster.store, cluster.bookies, ledger.ledger_id, [B, C, D])  # A lost
    assert [(c.lost, c.replacement, c.entries) for c in copied] == [(A, D, 30)]
    for entry_id in range(30):
        stored = await cluster.bookies[D].read_entry(ledger.ledger_id, entry_id)
        assert fmt.decode_entry(stored)[2] == b"e%d" % entry_id


async def test_the_periodic_check_marks_a_segment_once_its_writer_moved_on_then_stops():
    cluster = await Bookies([A, B, C]).start()
    ledger = await BookKeeperClient(cluster.store, cluster.bookies).create_ledger(2, 2, 2)
    await ledger.add_entries([b"a%d" % i for i in range(5)])
    await cluster.lose(B)
    clock = Clock()
    auditor = Auditor(cluster.store, lost_bookie_recovery_delay_s=0, check_interval_s=10, clock=clock)
    await auditor.audit()
    clock.now = 1.0
    await auditor.audit()
    # B is named only by the segment its (idle) writer still writes: nothing to mark yet.
    assert await ur.marked(cluster.store) == [] and B in auditor.lost_since
    cluster.files[B].inject("append", errno.ENOSPC, times=None)
    await ledger.add_entries([b"b%d" % i for i in range(5)])  # the writer moves to C
    clock.now = 2.0
    await auditor.audit()
    assert await ur.marked(cluster.store) == []  # registrations did not change: no check yet
    clock.now = 11.0
    assert await auditor.audit() == pytest.approx(10.0)
    assert await ur.marked(cluster.store) == [ledger.ledger_id]
    await cluster.worker().work_once()
    clock.now = 21.0
    await auditor.audit()  # B is named nowhere now: forgotten
    assert auditor.lost_since == {}
    checks = auditor.checks
    clock.now = 1000.0
    assert await auditor.audit() == pytest.approx(10.0)
    assert auditor.checks == checks  # nothing lost: no more reading of every ledger


async def test_a_cluster_client_learns_of_a_bookie_registered_after_it_looked():
    """A writer's spare can be a bookie that registered while its ledger was written."""
    from taureau.metadata import EmbeddedMetadataStore
    from taureau.storage.ledger.cluster import ClusterLedgerClient

    store = EmbeddedMetadataStore()
    await store.put(f"{AVAILABLE}/{A}", b"{}", ephemeral=True)
    client = ClusterLedgerClient(store)
    _, available = await client.reachable()
    assert available == [A]
    await store.put(f"{AVAILABLE}/{B}", b"{}", ephemeral=True)
    for _ in range(100):
        if B in client.bookies:
            break
        await asyncio.sleep(0.01)
    assert sorted(client.bookies) == [A, B] and client._spare({A}) == B
    await client.close()
    await store.put(f"{AVAILABLE}/{C}", b"{}", ephemeral=True)
    await asyncio.sleep(0.05)
    assert C not in client.bookies  # a closed client stops watching
    await store.close()
