"""Subscriptions on a path prefix before, during and after the structures under it exist."""

from __future__ import annotations

import threading

from taureau.state import Notification


def drain(sub, quiet: float = 1.0) -> list[Notification]:
    got = []
    while (n := sub.get_notification(timeout=quiet)) is not None:
        got.append(n)
    return got


def test_listen_before_the_path_exists_then_create_split_move_and_recreate(cluster):
    c = cluster.client()
    sub = c.listen("/jobs/j1", ops=["put", "enqueue"])  # nothing exists yet, not even /jobs
    assert not c.exists("/jobs")
    ht = c.open_or_create_hash_table("/jobs/j1/out")
    keys = [b"k%04d" % i for i in range(800)]  # ~150 KB into 64 KiB blocks: several splits
    for k in keys:
        ht.put(k, b"v" * 120)
    assert c.status("/jobs/j1/out")["blocks"] >= 3
    c.rename("/jobs/j1/out", "/elsewhere/out")  # moved out of the prefix: no longer heard
    c.open_hash_table("/elsewhere/out").put(b"outside", b"x")
    c.rename("/elsewhere/out", "/jobs/j1/back")  # moved back in, under another name
    c.open_hash_table("/jobs/j1/back").put(b"inside-again", b"x")
    c.remove("/jobs")  # gone, then made again at the same path
    c.open_or_create_queue("/jobs/j1/out").enqueue(b"job-done")
    got = drain(sub)
    assert sorted(n.data for n in got if (n.op, n.path) == ("put", "/jobs/j1/out")) == keys
    assert [(n.op, n.path, n.data) for n in got if n.data in (b"outside", b"inside-again", b"job-done")] == [
        ("put", "/jobs/j1/back", b"inside-again"),
        ("enqueue", "/jobs/j1/out", b"job-done"),
    ]
    assert len(got) == len(keys) + 2
    sub.close()


def test_listen_on_a_structure_that_is_splitting_hears_every_put_after_it(cluster):
    c = cluster.client()
    c.open_or_create_hash_table("/jobs/d/ht")
    listened = threading.Event()
    after: list[bytes] = []  # puts issued once listen() had returned

    def writer() -> None:
        h = cluster.client().open_hash_table("/jobs/d/ht")
        for i in range(1500):
            late = listened.is_set()  # read before the put: if set, the put must be heard
            h.put(b"w%05d" % i, b"v" * 100)
            if late:
                after.append(b"w%05d" % i)

    t = threading.Thread(target=writer)
    t.start()
    while c.status("/jobs/d/ht")["blocks"] < 2:  # the table is growing while we subscribe
        pass
    sub = c.listen("/jobs/d", ops=["put"])
    listened.set()
    t.join()
    assert c.status("/jobs/d/ht")["blocks"] >= 3
    heard = {n.data for n in drain(sub)}
    assert after and set(after) <= heard
    sub.close()


def take(sub, count: int, timeout: float = 5.0) -> list[Notification]:
    got = []
    while len(got) < count and (n := sub.get_notification(timeout=timeout)) is not None:
        got.append(n)
    return got


def test_listen_on_a_structure_being_created_hears_its_first_writes(cluster):
    c = cluster.client()
    for i in range(12):
        path = f"/jobs/c{i}/ht"
        made = threading.Event()

        def create(path=path, made=made) -> None:
            cluster.client().open_or_create_hash_table(path, num_blocks=4)
            made.set()

        t = threading.Thread(target=create)
        t.start()
        sub = c.listen(f"/jobs/c{i}", ops=["upsert"])  # races the create of a four-block table
        t.join()
        assert made.is_set()
        ht = c.open_hash_table(path)
        ht.multi_put({b"k%d" % j: b"v" for j in range(64)})  # lands on all four blocks
        assert sorted(n.data for n in take(sub, 64)) == sorted(b"k%d" % j for j in range(64))
        assert sub.get_notification(timeout=0.05) is None
        sub.close()
        c.remove(f"/jobs/c{i}")
