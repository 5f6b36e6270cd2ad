"""Real `taureau bookie` processes registered in a real ZooKeeper, written to by the ledger
client at a write quorum; kill -9 of one bookie loses nothing that was acknowledged and the
writer goes on (an ensemble change onto a spare bookie)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from taureau.common.errors import StorageError
from taureau.metadata.zookeeper import ZooKeeperMetadataStore
from taureau.storage.ledger.cluster import ClusterLedgerClient
from taureau.storage.ledger.registry import available_bookies
from taureau.storage.ledger.remote import RemoteBookie
from tests.e2e.bookies import BookieProcess, broker_on_bookies

pytestmark = pytest.mark.anyio


@pytest.fixture
def bookies(tmp_path, zk_url):
    started: list[BookieProcess] = []

    def start(n: int, *extra: str) -> list[BookieProcess]:
        for i in range(n):
            started.append(BookieProcess(tmp_path / f"bookie-{len(started)}-{i}", zk_url, *extra).start())
        return started

    yield start
    for b in started:
        b.kill()


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_bookies_register_while_alive_and_keep_their_entries_across_kill_9(bookies, zk_url):
    procs = await asyncio.to_thread(bookies, 3)
    store = await ZooKeeperMetadataStore.open(zk_url)
    assert sorted(await available_bookies(store)) == sorted(b.bookie_id for b in procs)
    remote = RemoteBookie(procs[0].bookie_id)
    await remote.add_entries(5, 0, [b"a", b"b", b"c"])
    await remote.close()
    procs[0].kill()
    procs[1].kill()
    # Restarted at once on the same port and data directory, a bookie waits until the node
    # of its previous session is gone, then registers again.
    await asyncio.to_thread(procs[0].start)
    assert procs[0].bookie_id in await available_bookies(store)

    # One that stays dead leaves the list with its ZooKeeper session (2 s here).
    async def gone() -> bool:
        return procs[1].bookie_id not in await available_bookies(store)

    await _until(gone)
    remote = RemoteBookie(procs[0].bookie_id)
    assert await remote.read_entries(5, 0, 2) == [b"a", b"b", b"c"]  # journaled: survived kill -9
    await remote.close()
    await store.close()


@pytest.mark.parametrize("ensemble", [2, 3])
async def test_kill_9_of_one_bookie_with_write_quorum_2_loses_nothing_acknowledged(bookies, zk_url, ensemble):
    # One bookie more than the ensemble: the spare that replaces the one killed.
    procs = await asyncio.to_thread(bookies, ensemble + 1)
    store = await ZooKeeperMetadataStore.open(zk_url)
    client = ClusterLedgerClient(store, request_timeout_s=10)
    ledger = await client.create_ledger(ensemble, 2, 2)
    victim = next(b for b in procs if b.bookie_id == ledger.metadata.ensemble[0])
    acked: dict[int, bytes] = {}
    failures: list[StorageError] = []
    window = asyncio.Semaphore(64)

    async def add(i: int) -> None:
        data = b"entry-%06d" % i
        try:
            entry_id = await ledger.add_entry(data)
        except StorageError as exc:
            failures.append(exc)
        else:
            acked[entry_id] = data
        finally:
            window.release()

    tasks = []
    for i in range(3000):
        await window.acquire()
        tasks.append(asyncio.ensure_future(add(i)))
        if i == 400:
            await asyncio.to_thread(victim.kill)  # mid-production, adds in flight
    await asyncio.gather(*tasks)
    # The writer replaced the dead bookie by the spare (an ensemble change) and went on.
    assert failures == []
    assert sorted(acked) == list(range(3000))
    assert len(ledger.metadata.ensembles) == 2
    assert victim.bookie_id not in ledger.metadata.ensemble

    # Another client (a new ZooKeeper session, as a broker taking over) recovers the ledger.
    store2 = await ZooKeeperMetadataStore.open(zk_url)
    reader_client = ClusterLedgerClient(store2, request_timeout_s=10)
    reader = await reader_client.open_ledger(ledger.ledger_id)
    assert victim.bookie_id not in reader.metadata.ensemble
    last = reader.last_add_confirmed
    assert last >= max(acked)
    entries = await reader.read_entries(0, last)
    for entry_id, data in acked.items():
        assert entries[entry_id] == data
    assert entries == [b"entry-%06d" % i for i in range(last + 1)]  # ids are in send order
    # The old writer is fenced out: nothing it adds now can be acknowledged.
    with pytest.raises(StorageError):
        await ledger.add_entry(b"too late")
    await reader_client.close()
    await client.close()
    await store2.close()
    await store.close()


def test_bookie_verb_validates_its_arguments_before_connecting(tmp_path):
    for args in (["--metadata-store", "embedded"], ["--metadata-store", "zk://h:99999"], []):
        out = subprocess.run(
            [sys.executable, "-m", "taureau.cli.main", "bookie", "--data-dir", str(tmp_path), *args],
            capture_output=True, text=True, timeout=30,
        )
        assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr


def _ensemble_of_newest_ledger(zk_url: str) -> list[str]:
    async def read() -> list[str]:
        import json

        store = await ZooKeeperMetadataStore.open(zk_url)
        try:
            newest = max(int(n) for n in await store.children("/ledgers"))
            return json.loads((await store.get(f"/ledgers/{newest}"))[0])["ensemble"]
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_broker_on_remote_bookies_survives_kill_9_of_one_with_nothing_acked_lost(tmp_path, zk_url):
    import pulsar

    server, procs = broker_on_bookies(tmp_path, zk_url, 3)
    try:
        server.start()
        client = pulsar.Client(server.service_url, operation_timeout_seconds=30,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        topic = "persistent://public/default/on-remote-bookies"
        consumer = client.subscribe(topic, "check")
        producer = client.create_producer(topic, batching_enabled=False)
        sent = []
        for i in range(1500):
            if i == 300:  # kill -9 a bookie that holds the topic's current ledger
                victim = _ensemble_of_newest_ledger(zk_url)[0]
                next(b for b in procs if b.bookie_id == victim).kill()
            producer.send(b"m%d" % i)  # raises if the broker could not store it
            sent.append(b"m%d" % i)
        received = []
        for _ in range(len(sent)):
            msg = consumer.receive(10_000)
            received.append(msg.data())
            consumer.acknowledge(msg)
        assert received == sent  # every acknowledged message, once, in order
        client.close()
        assert victim not in _ensemble_of_newest_ledger(zk_url)
        # kill -9 of the broker too: its restart recovers the open ledger from the bookies left.
        server.kill()
        server.restart()
        client = pulsar.Client(server.service_url, operation_timeout_seconds=30,
                               logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
        reader = client.subscribe(topic, "after-restart", initial_position=pulsar.InitialPosition.Earliest)
        # The first message waits for the topic's load: the killed broker's metadata session
        # must expire (2 s) and the open ledger be recovered from the bookies left; a 10 s wait
        # ran out once in a loaded CI run, so the client's operation timeout bounds it instead.
        again = [reader.receive(30_000 if i == 0 else 10_000).data() for i in range(len(sent))]
        assert again == sent
        client.close()
    finally:
        server.stop()
        for b in procs:
            b.kill()


def test_remote_bookies_need_a_zookeeper_store(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(tmp_path), "--remote-bookies"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 2 and "--remote-bookies needs --metadata-store zk://" in out.stderr


def test_a_bookie_whose_session_expires_exits_with_one_line(tmp_path, zk_url):
    import signal

    bookie = BookieProcess(tmp_path / "b", zk_url, session_timeout_s=1.0).start()
    proc = bookie.proc
    assert proc is not None
    proc.send_signal(signal.SIGSTOP)  # frozen past its session: ZooKeeper expires it
    time.sleep(4)
    proc.send_signal(signal.SIGCONT)
    code = proc.wait(30)
    bookie.proc = None
    output = "".join(bookie.output)
    assert code == 1, output
    assert "taureau bookie: metadata store session expired" in output and "Traceback" not in output


async def test_names_under_the_registry_that_are_not_addresses_are_ignored():
    from taureau.metadata import EmbeddedMetadataStore
    from taureau.storage.ledger.registry import AVAILABLE

    store = EmbeddedMetadataStore()
    await store.put(f"{AVAILABLE}/10.0.0.1:3181", b"{}")
    await store.put(f"{AVAILABLE}/not-an-address", b"{}")
    await store.put(f"{AVAILABLE}/host:99999", b"{}")
    assert await available_bookies(store) == ["10.0.0.1:3181"]
    await store.close()


async def test_recover_bookies_copies_a_lost_bookies_entries_onto_another(bookies, zk_url):
    procs = await asyncio.to_thread(bookies, 3, "--no-autorecovery")  # the copying is this verb's here
    store = await ZooKeeperMetadataStore.open(zk_url)
    client = ClusterLedgerClient(store, request_timeout_s=10)
    ledger = await client.create_ledger(2, 2, 2)
    await ledger.add_entries([b"e%d" % i for i in range(200)])
    await ledger.close()
    await client.close()
    first, second = (next(b for b in procs if b.bookie_id == i) for i in ledger.metadata.ensemble)
    spare = next(b for b in procs if b not in (first, second))

    async def left(proc: BookieProcess) -> bool:
        return proc.bookie_id not in await available_bookies(store)

    def recover() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "taureau.cli.main", "recover-bookies", "--metadata-store", zk_url],
                              capture_output=True, text=True, timeout=120)

    first.kill()
    await _until(lambda: left(first))
    out = await asyncio.to_thread(recover)
    assert out.returncode == 0, out.stderr
    assert f"200 entries of lost bookie {first.bookie_id} copied to {spare.bookie_id}" in out.stdout
    # The original copies are both gone now; the re-replicated one serves every entry.
    second.kill()
    await _until(lambda: left(second))
    reader_client = ClusterLedgerClient(store, request_timeout_s=10)
    reader = await reader_client.open_ledger(ledger.ledger_id)
    assert await reader.read_entries(0, 199) == [b"e%d" % i for i in range(200)]
    await reader_client.close()
    # With one bookie left there is nothing to copy onto: one clear line, exit 1.
    out = await asyncio.to_thread(recover)
    assert out.returncode == 1
    assert f"no bookie can replace {second.bookie_id}" in out.stderr and "Traceback" not in out.stderr
    await store.close()
