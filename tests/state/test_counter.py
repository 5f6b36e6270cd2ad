"""Counter tables: atomic increments next to the value, across splits, dumps and bad input."""

from __future__ import annotations

import threading

import pytest

from taureau.common import errors
from taureau.state import Counter, HashTable
from taureau.state.codec import Op
from taureau.state.kinds.counter import INCR, MAX, MULTI_INCR, pack_i64
from tests.state.test_cli_service import run_cli


def test_incr_get_set_remove(cluster):
    c = cluster.client()
    hits = c.open_or_create("/jobs/c/hits", Counter)
    assert hits.incr(b"a") == 1 and hits.incr(b"a", 41) == 42 and hits.incr(b"a", -50) == -8
    assert hits.get(b"a") == -8 and hits.exists(b"a") and not hits.exists(b"b")
    with pytest.raises(errors.KeyNotFoundError):
        hits.get(b"b")
    hits.set(b"b", 7)
    assert hits.multi_get([b"a", b"b", b"c"]) == [-8, 7, None]
    hits.remove(b"a")
    assert len(hits) == 1 and hits.incr(b"a") == 1  # starts again at 0


def test_parallel_increments_are_never_lost(cluster):
    """A get-then-upsert on a hash table would lose updates here; an increment cannot."""
    c = cluster.client()
    c.open_or_create("/jobs/c/shared", Counter)

    def worker() -> None:
        h = cluster.client().open("/jobs/c/shared", Counter)
        for _ in range(400):
            h.incr(b"total")
        h.multi_incr([(b"total", 1), (b"other", 2)] * 50)

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert c.open("/jobs/c/shared", Counter).multi_get([b"total", b"other"]) == [8 * 450, 8 * 100]


def test_multi_incr_returns_each_value_in_order_across_splits(cluster):
    c = cluster.client()
    ctr = c.open_or_create("/jobs/c/many", Counter)
    keys = [b"key-%05d" % i for i in range(3000)]  # ~200 KB of counters: several 64 KiB blocks
    assert ctr.multi_incr({k: i for i, k in enumerate(keys)}) == list(range(3000))
    assert c.status("/jobs/c/many")["blocks"] >= 3
    assert ctr.multi_incr([(keys[5], 1), (keys[5], 1), (keys[9], -9)]) == [6, 7, 0]
    assert ctr.multi_get(keys[:10]) == [0, 1, 2, 3, 4, 7, 6, 7, 8, 0] and len(ctr) == 3000


def test_overflow_is_refused_and_a_batch_is_all_or_nothing(cluster):
    c = cluster.client()
    ctr = c.open_or_create("/jobs/c/big", Counter)
    ctr.set(b"top", MAX)
    with pytest.raises(errors.ValueTooLargeError):
        ctr.incr(b"top")
    with pytest.raises(errors.ValueTooLargeError):
        ctr.multi_incr([(b"x", 5), (b"top", 1)])  # one block: neither is applied
    assert ctr.multi_get([b"x", b"top"]) == [None, MAX]
    with pytest.raises(errors.ValueTooLargeError):
        ctr.incr(b"x", MAX + 1)  # refused by the client: not a 64-bit delta


def test_counter_bad_input(cluster):
    c = cluster.client()
    ctr = c.open_or_create("/jobs/c/bad", Counter)
    p = ctr._parts[0]
    conn = c.conn(p.addr)
    for op, fields, exc in [
        (Op.UPSERT, [b"k", b"1234567"], errors.StateProtocolError),  # a value is 8 bytes
        (INCR, [b"k"], errors.StateProtocolError),
        (INCR, [b"k", b"\x00" * 9], errors.StateProtocolError),
        (MULTI_INCR, [b"k", pack_i64(1), b"j"], errors.StateProtocolError),
        (Op.PUT, [b"k", pack_i64(1)], errors.WrongTypeError),  # bytes values are a hash table's
        (Op.MULTI_PUT, [b"k", pack_i64(1)], errors.WrongTypeError),
    ]:
        with pytest.raises(exc):
            conn.call(op, [p.alloc, *fields])
    assert len(ctr) == 0  # nothing refused left anything behind
    with pytest.raises(errors.WrongTypeError):
        c.open("/jobs/c/bad", HashTable)
    ht = c.open_or_create("/jobs/c/ht", HashTable)
    q = ht._parts[0]
    with pytest.raises(errors.WrongTypeError):
        c.conn(q.addr).call(INCR, [q.alloc, b"k", pack_i64(1)])


def test_dump_load_and_notifications_and_cli(cluster, capsys):
    c = cluster.client()
    sub = c.listen("/jobs/c", ops=["incr"])
    ctr = c.open_or_create("/jobs/c/d", Counter)
    ctr.multi_incr({b"a": 1, b"b": -2})
    got = {(sub.get_notification(timeout=5).data) for _ in range(2)}
    assert got == {b"a", b"b"}
    c.dump("/jobs/c/d", "local://c.dump")
    c.load("/jobs/c/copy", "local://c.dump")
    assert c.open("/jobs/c/copy", Counter).multi_get([b"a", b"b"]) == [1, -2]
    a = ("state", "--controller", cluster.address)
    assert run_cli(capsys, *a, "put", "/jobs/c/d", "a", "5")[0] == 0
    assert run_cli(capsys, *a, "get", "/jobs/c/d", "a")[1] == "6\n"
    code, _, err = run_cli(capsys, *a, "put", "/jobs/c/d", "a", "five")
    assert code == 1 and "not an integer" in err
