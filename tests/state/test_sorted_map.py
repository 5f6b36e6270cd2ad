"""Sorted maps: keys in byte order across range-partitioned blocks; range scans, top-k."""

from __future__ import annotations

import random
import threading

import pytest

from taureau.common import errors
from taureau.state import SortedMap
from taureau.state.codec import STALE, Redirect, pack_u64
from taureau.state.kinds.sorted_map import RANGE, position


def ref_range(ref: dict[bytes, bytes], start: bytes, end: bytes | None, limit: int | None, reverse: bool):
    keys = sorted(k for k in ref if k >= start and (end is None or k < end))
    if reverse:
        keys.reverse()
    return [(k, ref[k]) for k in keys[:limit]]


def test_put_get_and_ordered_scans(cluster):
    c = cluster.client()
    sm = c.open_or_create("/jobs/s/m", SortedMap)
    sm.multi_put({b"b": b"2", b"a": b"1", b"c": b"3", b"a\x00": b"1z", b"": b"empty"})
    assert sm.get(b"a\x00") == b"1z"
    assert sm.range() == [(b"", b"empty"), (b"a", b"1"), (b"a\x00", b"1z"), (b"b", b"2"), (b"c", b"3")]
    assert sm.range(b"a", b"c") == [(b"a", b"1"), (b"a\x00", b"1z"), (b"b", b"2")]
    assert sm.range(reverse=True, limit=2) == [(b"c", b"3"), (b"b", b"2")]  # top 2
    assert sm.range(b"zz") == [] and sm.range(limit=0) == []
    with pytest.raises(errors.DuplicateKeyError):
        sm.put(b"a", b"again")
    sm.remove(b"b")
    sm.put(b"b", b"back")
    assert sm.range(b"b") == [(b"b", b"back"), (b"c", b"3")]


def test_scans_match_a_reference_across_splits_and_merges(cluster):
    c = cluster.client()
    sm = c.open_or_create("/jobs/s/big", SortedMap)
    rnd = random.Random(7)
    ref: dict[bytes, bytes] = {}
    for _ in range(6):
        batch = {rnd.randbytes(rnd.randint(1, 24)): rnd.randbytes(rnd.randint(0, 40)) for _ in range(600)}
        sm.multi_put(batch)
        ref.update(batch)
    assert c.status("/jobs/s/big")["blocks"] >= 3
    for _ in range(40):
        start = rnd.randbytes(rnd.randint(0, 3))
        end = rnd.choice([None, start + rnd.randbytes(rnd.randint(1, 3))])
        limit = rnd.choice([None, 1, 7, 500])
        reverse = rnd.random() < 0.5
        assert sm.range(start, end, limit=limit, reverse=reverse) == ref_range(
            ref, start, end, limit, reverse
        )
    for k in rnd.sample(sorted(ref), len(ref) - 50):  # empty most blocks: neighbours merge
        sm.remove(k)
        del ref[k]
    assert sm.range() == ref_range(ref, b"", None, None, False)
    assert len(sm) == 50


def test_top_k_while_the_map_is_growing(cluster):
    c = cluster.client()
    sm = c.open_or_create("/jobs/s/grow", SortedMap)
    done = threading.Event()
    written: list[bytes] = []

    def writer() -> None:
        h = cluster.client().open("/jobs/s/grow", SortedMap)
        for i in range(4000):
            k = b"score-%08d" % (i * 7919 % 100000)
            h.upsert(k, b"x" * 20)
            written.append(k)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    while not done.is_set():
        seen = list(written)
        top = [k for k, _ in sm.range(reverse=True, limit=5)]
        assert top == sorted(top, reverse=True)
        if seen:
            assert top and top[0] >= max(seen)  # a scan sees everything written before it
    t.join()
    assert [k for k, _ in sm.range(reverse=True, limit=3)] == sorted(written, reverse=True)[:3]
    assert c.status("/jobs/s/grow")["blocks"] >= 2


def test_keys_sharing_their_first_16_bytes_cannot_split(make_cluster):
    cl = make_cluster(block_size=8 << 10)
    c = cl.client()
    sm = c.open_or_create("/jobs/s/prefix", SortedMap)
    assert position(b"p" * 16 + b"1") == position(b"p" * 16 + b"2")
    with pytest.raises(errors.OutOfMemoryError, match="one slot"):
        for i in range(1000):
            sm.put(b"p" * 16 + b"%04d" % i, b"v" * 100)
    assert sm.range(limit=1)[0][0].startswith(b"p" * 16)


def test_range_bad_input_and_stale_maps(cluster):
    c = cluster.client()
    sm = c.open_or_create("/jobs/s/bad", SortedMap)
    sm.put(b"k", b"v")
    p = sm._parts[0]
    conn = c.conn(p.addr)
    whole = [p.alloc, (0).to_bytes(1, "big"), (1 << 128).to_bytes(17, "big")]
    assert conn.call(RANGE, [*whole, b"", b"", b"\x00", pack_u64(0)]) == [b"k", b"v"]
    for fields in (
        [*whole, b"", b"", b"\x00"],
        [*whole, b"", b"", b"", pack_u64(0)],
        [*whole, b"", b"", b"\x00", b"x"],
    ):
        with pytest.raises(errors.StateProtocolError):
            conn.call(RANGE, fields)
    with pytest.raises(Redirect) as r:  # the client's idea of the block's range is old
        conn.call(RANGE, [p.alloc, b"\x00", b"\x01", b"", b"", b"\x00", pack_u64(0)])
    assert r.value.code == STALE
    with pytest.raises(ValueError):
        sm.range(limit=-1)


def test_dump_and_load_keep_the_order(cluster):
    c = cluster.client()
    sm = c.open_or_create("/jobs/s/d", SortedMap)
    data = {b"%05d" % i: b"v%d" % i for i in range(1000)}
    sm.multi_put(data)
    c.dump("/jobs/s/d", "local://sm.dump")
    c.load("/jobs/s/copy", "local://sm.dump")
    assert c.open("/jobs/s/copy", SortedMap).range() == sorted(data.items())
