"""A controller that survives restarts: the namespace in the metadata store, memory servers that
rejoin and report their blocks, clients that reconnect and go on."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from taureau.common import errors
from taureau.metadata.embedded import EmbeddedMetadataStore
from taureau.state.client import RECONNECTED
from taureau.state.codec import Op
from taureau.state.controller import Controller


def fill(c, prefix: str = "/jobs/a") -> None:
    """A job's state: a hash table, queue and file of several blocks each, and flags."""
    ht = c.open_or_create_hash_table(f"{prefix}/ht")
    ht.multi_put({b"k%d" % i: b"v%d" % i * 20 for i in range(2000)})
    q = c.open_or_create_queue(f"{prefix}/q")
    q.multi_enqueue([b"item%04d" % i + b"x" * 100 for i in range(900)])
    c.open_or_create_file(f"{prefix}/f").write(b"abc" * 50000)
    c.create_hash_table(f"{prefix}/pinned", pinned=True).put(b"p", b"1")


def check(c, prefix: str = "/jobs/a") -> None:
    ht = c.open_hash_table(f"{prefix}/ht")
    assert ht.multi_get([b"k%d" % i for i in range(2000)]) == [b"v%d" % i * 20 for i in range(2000)]
    q = c.open_queue(f"{prefix}/q")
    assert [q.dequeue() for _ in range(900)] == [b"item%04d" % i + b"x" * 100 for i in range(900)]
    with pytest.raises(errors.QueueEmptyError):
        q.dequeue()
    f = c.open_file(f"{prefix}/f")
    assert f.read() == b"abc" * 50000
    assert c.status(f"{prefix}/pinned")["pinned"] is True
    assert c.open_hash_table(f"{prefix}/pinned").get(b"p") == b"1"


def test_controller_restart_keeps_every_structure_and_its_data(durable_cluster):
    cl = durable_cluster()
    c = cl.client()
    fill(c)
    blocks = {p: c.status(f"/jobs/a/{p}")["blocks"] for p in ("ht", "q", "f")}
    assert blocks["ht"] >= 4 and blocks["q"] >= 2 and blocks["f"] >= 3
    used = c.stats()["blocks_used"]
    cl.restart_controller()
    cl.wait_serving(2)
    assert c.ls("/jobs/a") == [
        {"name": n, "kind": k}
        for n, k in [("f", "file"), ("ht", "hash_table"), ("pinned", "hash_table"), ("q", "queue")]
    ]
    assert {p: c.status(f"/jobs/a/{p}")["blocks"] for p in ("ht", "q", "f")} == blocks
    assert c.stats()["blocks_used"] == used  # every block kept, none leaked or freed
    check(c)
    ht = c.open_hash_table("/jobs/a/ht")  # it still grows: splits work after the restart
    ht.multi_put({b"n%d" % i: b"w" * 100 for i in range(2000)})
    assert c.status("/jobs/a/ht")["blocks"] > blocks["ht"]
    assert ht.get(b"n1999") == b"w" * 100


def test_alloc_and_struct_ids_are_never_reused_after_a_restart(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    first = c.control(Op.BLOCK_MAP, {"path": c.open_or_create_hash_table("/a/one").path})
    cl.restart_controller()
    cl.wait_serving(1)
    second = c.control(Op.BLOCK_MAP, {"path": c.open_or_create_hash_table("/a/two").path})
    assert second["id"] > first["id"]
    assert second["partitions"][0]["chain"][0]["alloc"] > first["partitions"][0]["chain"][0]["alloc"]


def test_a_job_goes_on_through_a_controller_restart(durable_cluster):
    cl = durable_cluster()
    c = cl.client()
    sub = c.listen("/jobs/live", ops=["put"])
    acked: list[bytes] = []
    failures: list[BaseException] = []
    resubscribed = threading.Event()

    def job() -> None:
        try:
            ht = cl.client().open_or_create_hash_table("/jobs/live/ht")
            for i in range(3000):  # ~300 KB through 64 KiB blocks: splits before and after
                if i == 2500:
                    resubscribed.wait(30)
                ht.put(b"key%05d" % i, b"v" * 90)
                acked.append(b"key%05d" % i)
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    t = threading.Thread(target=job)
    t.start()
    while len(acked) < 500:
        time.sleep(0.01)
    cl.stop_controller()
    time.sleep(0.5)  # the job keeps writing to its memory servers meanwhile
    cl.start_controller()
    heard = []
    while (n := sub.get_notification(timeout=10)) is not None and n.op != RECONNECTED:
        heard.append(n)  # puts from before the loss; reading on finds the loss and subscribes again
    assert n is not None and n.op == RECONNECTED
    resubscribed.set()
    t.join(60)
    assert not failures and len(acked) == 3000
    ht = c.open_hash_table("/jobs/live/ht")
    assert ht.multi_get(acked) == [b"v" * 90] * 3000
    assert len(ht) == 3000
    while (n := sub.get_notification(timeout=1)) is not None:
        heard.append(n)
    assert {n.data for n in heard if n.op == "put"} >= set(acked[2500:])  # every put after it is heard


def test_a_create_waits_for_a_known_memory_server_that_is_rejoining(durable_cluster):
    cl = durable_cluster(servers=1, num_blocks=4)
    c = cl.client()
    c.open_or_create_hash_table("/jobs/old/ht").put(b"k", b"v")
    cl.stop_controller()
    time.sleep(2.5)  # the memory server's rejoin attempts are now about a second apart
    cl.start_controller()
    t0 = time.monotonic()
    ht = c.open_or_create_hash_table("/jobs/new/ht", num_blocks=2)  # no free block until it rejoins
    ht.put(b"a", b"b")
    assert ht.get(b"a") == b"b" and time.monotonic() - t0 < 5
    assert c.open_hash_table("/jobs/old/ht").get(b"k") == b"v"


def test_a_create_stops_waiting_for_a_server_that_never_comes(durable_cluster):
    cl = durable_cluster(servers=1, join_wait_ms=500)
    c = cl.client()
    c.open_or_create_hash_table("/jobs/old/ht")
    cl.stop_controller()
    cl.run(cl.memory_servers.pop().close())  # gone for good
    cl.start_controller()
    t0 = time.monotonic()
    with pytest.raises(errors.OutOfMemoryError):
        c.create_hash_table("/jobs/new/ht")
    assert 0.4 < time.monotonic() - t0 < 5
    assert not c.exists("/jobs/new/ht")


def test_a_server_that_does_not_rejoin_in_time_is_declared_dead(durable_cluster):
    cl = durable_cluster(rejoin_ms=500)
    c = cl.client()
    ht = c.open_or_create_hash_table("/jobs/two/ht", num_blocks=2)  # one block on each server
    ht.multi_put({b"k%d" % i: b"v" for i in range(200)})
    cl.stop_controller()
    gone = cl.memory_servers.pop()
    cl.run(gone.close())
    cl.start_controller()
    deadline = time.monotonic() + 10
    while c.status("/jobs/two/ht")["state"] != "lost":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "did not rejoin" in c.status("/jobs/two/ht")["lost_reason"]
    assert c.stats()["servers"] == 1 and c.stats()["servers_joining"] == 0
    outcomes = set()
    for i in range(200):
        try:
            assert ht.get(b"k%d" % i) == b"v"
            outcomes.add("ok")
        except errors.BlockLostError:
            outcomes.add("lost")
    assert outcomes == {"ok", "lost"}  # the keys on the server that came back still answer


def test_a_removed_structure_stays_removed_and_its_blocks_free(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    free = c.stats()["blocks_free"]
    c.open_or_create_hash_table("/jobs/x/ht", num_blocks=3)
    c.rename("/jobs/x", "/jobs/y")
    c.remove("/jobs/y/ht")
    c.open_or_create_queue("/jobs/y/q")
    cl.restart_controller()
    cl.wait_serving(1)
    assert not c.exists("/jobs/x") and not c.exists("/jobs/y/ht") and c.exists("/jobs/y/q")
    assert c.stats()["blocks_free"] == free - 1


def test_a_rename_cut_short_by_a_crash_is_finished_on_restart(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    for n in ("a", "b", "c"):
        c.open_or_create_hash_table(f"/jobs/src/{n}").put(b"k", n.encode())
    cat = cl.controller.catalog

    async def half_rename() -> None:  # what a crash after the first record leaves behind
        rec = cl.controller.ns.lookup("/jobs/src/a").record()
        sid = cl.controller.ns.lookup("/jobs/src/a").struct_id
        await cat.store.put(f"{cat.root}/renames/99", b'{"src":"/jobs/src","dst":"/jobs/dst"}')
        rec["path"] = "/jobs/dst/a"
        await cat.save_structure(sid, rec)

    cl.run(half_rename())
    cl.restart_controller()
    cl.wait_serving(1)
    assert [x["name"] for x in c.ls("/jobs/dst")] == ["a", "b", "c"] and not c.exists("/jobs/src")
    assert [c.open_hash_table(f"/jobs/dst/{n}").get(b"k") for n in "abc"] == [b"a", b"b", b"c"]
    assert cl.run(cat.store.children(f"{cat.root}/renames")) == []


def test_a_second_controller_on_the_same_namespace_is_refused(tmp_path):
    async def main() -> None:
        store = EmbeddedMetadataStore(None)
        first = Controller(lease_ms=1000, data_dir=str(tmp_path), store=store)
        await first.start()
        second = Controller(lease_ms=1000, data_dir=str(tmp_path), store=store)
        with pytest.raises(errors.StateUnavailableError, match="owned by"):
            await second.start()
        await first.close()
        await second.start()  # released on close
        await second.close()

    asyncio.run(main())


def test_concurrent_open_or_create_of_one_path_all_get_the_finished_structure(durable_cluster):
    cl = durable_cluster(servers=1)
    for round_ in range(5):
        path = f"/jobs/race{round_}/ht"
        handles: list = []
        failures: list[BaseException] = []
        go = threading.Barrier(6)

        def opener(i: int, path=path, handles=handles, failures=failures, go=go) -> None:
            try:
                c = cl.client()
                go.wait()
                ht = c.open_or_create_hash_table(path, num_blocks=3)
                ht.put(b"k%d" % i, b"v")  # a handle on a half-made table has no block to put into
                handles.append(ht)
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append(e)

        ts = [threading.Thread(target=opener, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not failures and len(handles) == 6
        assert handles[0].multi_get([b"k%d" % i for i in range(6)]) == [b"v"] * 6
        assert cl.client().status(path)["blocks"] == 3
