"""Hash table over real memory servers: ops, typed errors, batches, splits and merges."""

from __future__ import annotations

import threading

import pytest

from taureau.common import errors
from taureau.state.blocks import entry_cost, slot_of
from taureau.state.codec import Redirect
from taureau.state.conn import Conn
from taureau.state.kinds.hash_table import MULTI_INSERT


def test_put_get_and_typed_errors(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/jobs/j1/shuffle/0")
    ht.put(b"k", b"v")
    assert ht.get(b"k") == b"v"
    assert ht.exists(b"k") and not ht.exists(b"nope")
    with pytest.raises(errors.DuplicateKeyError):
        ht.put(b"k", b"w")
    with pytest.raises(errors.KeyNotFoundError):
        ht.get(b"missing")
    with pytest.raises(errors.KeyNotFoundError):
        ht.update(b"missing", b"x")
    with pytest.raises(errors.KeyNotFoundError):
        ht.remove(b"missing")
    ht.upsert(b"k", b"w")
    ht.update(b"k", b"z")
    assert ht.get(b"k") == b"z"
    ht.remove(b"k")
    assert not ht.exists(b"k")
    # after every error above the server still serves
    ht.put(b"k2", b"")
    assert ht.get(b"k2") == b""


def test_value_over_block_size_is_refused_and_nothing_changes(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/t/big")
    ht.put(b"a", b"1")
    with pytest.raises(errors.ValueTooLargeError):
        ht.put(b"huge", b"x" * (65 << 10))
    assert not ht.exists(b"huge")
    assert ht.get(b"a") == b"1" and len(ht) == 1


def test_multi_put_multi_get(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/t/batch", num_blocks=4)
    items = {b"key%d" % i: b"val%d" % i for i in range(500)}
    ht.multi_put(items)
    got = ht.multi_get([*items, b"absent"])
    assert got[:-1] == list(items.values()) and got[-1] is None
    assert len(ht) == 500


def test_wrong_type_and_unknown_path(cluster):
    c = cluster.client()
    c.open_or_create_queue("/t/q")
    with pytest.raises(errors.WrongTypeError):
        c.open_hash_table("/t/q")
    with pytest.raises(errors.WrongTypeError):
        c.open_hash_table("/t")
    with pytest.raises(errors.PathNotFoundError):
        c.open_hash_table("/t/none")
    with pytest.raises(errors.InvalidPathError):
        c.open_or_create_hash_table("relative/path")
    with pytest.raises(errors.PathExistsError):
        c.create_hash_table("/t/q")


def test_split_under_concurrent_writers_and_readers_loses_and_duplicates_nothing(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/jobs/split/ht")
    n_writers, per_writer = 4, 600  # 2400 x ~160 B = 6 blocks' worth: several splits
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(per_writer):
                ht.put(b"w%d-%d" % (w, i), b"v" * 100)
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    def reader() -> None:
        try:
            while not stop.is_set():
                for i in range(0, per_writer, 37):
                    try:
                        assert ht.get(b"w0-%d" % i) == b"v" * 100
                    except errors.KeyNotFoundError:
                        pass  # not written yet
        except BaseException as e:  # noqa: BLE001
            failures.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    for t in readers:
        t.join(60)
    assert not failures, failures
    assert c.status("/jobs/split/ht")["blocks"] >= 3
    keys = [b"w%d-%d" % (w, i) for w in range(n_writers) for i in range(per_writer)]
    assert all(v == b"v" * 100 for v in ht.multi_get(keys))
    assert len(ht) == len(keys)  # no duplicates across partitions


def test_merge_at_low_watermark_keeps_every_key(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/jobs/merge/ht")
    ht.multi_put({b"k%d" % i: b"v" * 200 for i in range(1200)})
    grown = c.status("/jobs/merge/ht")["blocks"]
    assert grown >= 3
    for i in range(1150):
        ht.remove(b"k%d" % i)
    # merges are asynchronous: poke with reads until the map shrinks
    for _ in range(200):
        if c.status("/jobs/merge/ht")["blocks"] < grown:
            break
        for i in range(1150, 1200, 7):
            ht.get(b"k%d" % i)
        threading.Event().wait(0.02)
    assert c.status("/jobs/merge/ht")["blocks"] < grown
    assert ht.multi_get([b"k%d" % i for i in range(1150, 1200)]) == [b"v" * 200] * 50
    assert len(ht) == 50


def test_client_made_before_fork_works_in_the_child(cluster):
    import gc
    import multiprocessing

    c = cluster.client()
    ht = c.open_or_create_hash_table("/fork/ht")
    ht.put(b"parent", b"1")

    def child(q) -> None:
        ht.put(b"child", b"2")
        q.put(ht.get(b"parent"))

    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    # As Python's docs advise before a fork: collect, then freeze, so that the child's
    # collector never frees what it inherited. A CI run's child hung for good at exit in the
    # destructor of an official Pulsar client Consumer that an earlier test of this worker
    # left in a reference cycle: its C++ executor waits for threads a fork does not copy.
    gc.collect()
    gc.freeze()
    try:
        p.start()
    finally:
        gc.unfreeze()
    assert q.get(timeout=20) == b"1"
    p.join(20)
    assert p.exitcode == 0
    assert ht.get(b"child") == b"2"


BLOCK = 64 << 10


def test_multi_put_of_values_over_half_a_block_splits_until_they_fit(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/b/big")
    items = {b"k%d" % i: bytes([i]) * int(0.6 * BLOCK) for i in range(4)}
    ht.multi_put(items)
    assert ht.multi_get(list(items)) == list(items.values())
    assert c.status("/b/big")["blocks"] >= 4 and c.stats()["blocks_free"] >= 8


def test_keys_sharing_one_slot_past_a_block_fail_with_that_reason(cluster):
    seen: dict[int, bytes] = {}
    i = 0
    while (slot := slot_of(b"c%d" % i)) not in seen:
        seen[slot] = b"c%d" % i
        i += 1
    a, b = seen[slot], b"c%d" % i
    c = cluster.client()
    ht = c.open_or_create_hash_table("/b/collide")
    ht.put(a, b"1" * int(0.6 * BLOCK))
    with pytest.raises(errors.OutOfMemoryError, match="one slot"):
        ht.put(b, b"2" * int(0.6 * BLOCK))
    assert ht.get(a) == b"1" * int(0.6 * BLOCK) and not ht.exists(b)


def test_multi_put_charges_a_repeated_key_once(cluster):
    ht = cluster.client().open_or_create_hash_table("/b/dup")
    ht.multi_put([(b"k", b"v" * 100)] * 50 + [(b"k", b"w")])
    assert ht.get(b"k") == b"w"
    (blk,) = cluster.call(lambda: list(cluster.memory_servers[0].blocks.values()))
    assert blk.used == entry_cost(len(b"k"), len(b"w"))


def test_multi_insert_inserts_the_absent_keys_and_answers_who_holds_the_rest(cluster):
    ht = cluster.client().open_or_create_hash_table("/t/claims", num_blocks=4)
    ht.multi_put({b"k%03d" % i: b"old" for i in range(0, 300, 3)})
    pairs = [(b"k%03d" % i, b"new%d" % i) for i in range(300)]
    got = ht.multi_insert(pairs)
    assert got == [b"old" if i % 3 == 0 else None for i in range(300)]
    assert ht.multi_get([k for k, _ in pairs]) == [b"old" if i % 3 == 0 else b"new%d" % i for i in range(300)]
    # Sent again (as after a broken connection), every pair comes back held, by its own value.
    assert ht.multi_insert(pairs) == [b"old" if i % 3 == 0 else b"new%d" % i for i in range(300)]
    # A key twice in one batch: the first pair inserts, the second finds it.
    assert ht.multi_insert([(b"twice", b"a"), (b"twice", b"b")]) == [None, b"a"]
    assert ht.get(b"twice") == b"a" and len(ht) == 301


def test_multi_insert_bad_input_changes_nothing_and_the_table_keeps_serving(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/t/claims-bad")
    ht.put(b"a", b"1")
    with pytest.raises(errors.ValueTooLargeError):
        ht.multi_insert([(b"b", b"2"), (b"huge", b"x" * (65 << 10))])
    assert not ht.exists(b"b") and not ht.exists(b"huge")
    p = ht._parts[0]
    conn = Conn(p.addr, 5)
    with pytest.raises(errors.StateProtocolError, match="key/value pairs"):
        conn.call(MULTI_INSERT, [p.alloc, b"odd"])
    # More than the block has room for (64 KiB blocks): refused whole until it has split.
    ht.multi_put({b"f%02d" % i: b"v" * 1000 for i in range(40)})
    pairs = [(b"m%02d" % i, b"w" * 1000) for i in range(30)]
    with pytest.raises(Redirect):
        conn.call(MULTI_INSERT, [p.alloc, *(x for kv in pairs for x in kv)])
    conn.close()
    assert ht.multi_get([k for k, _ in pairs]) == [None] * 30
    assert ht.multi_insert(pairs) == [None] * 30  # the client follows the split
    assert len(ht) == 71
    assert ht.multi_insert([(b"a", b"9"), (b"c", b"3")]) == [b"1", None]
    assert ht.get(b"a") == b"1" and ht.get(b"c") == b"3" and len(ht) == 72
