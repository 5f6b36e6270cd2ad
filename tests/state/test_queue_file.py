"""FIFO queue across segments and the block-by-block file."""

from __future__ import annotations

import threading

import pytest

from taureau.common import errors
from taureau.state.codec import pack_u64
from taureau.state.kinds.queue import QueueBlock


def test_queue_order_with_several_producers_across_segments(cluster):
    c = cluster.client()
    q = c.open_or_create_queue("/jobs/q/work")
    before = c.stats()["blocks_free"]
    producers, per = 4, 400  # 1600 x ~150 B: several 64 KiB segments

    def produce(p: int) -> None:
        for i in range(per):
            q.enqueue(b"p%d-%05d" % (p, i) + b"." * 90)

    ts = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert c.status("/jobs/q/work")["blocks"] >= 3
    assert len(q) == producers * per
    got = [q.dequeue() for _ in range(producers * per)]
    with pytest.raises(errors.QueueEmptyError):
        q.dequeue()
    # every item once, and each producer's items in the order it sent them
    assert len(set(got)) == len(got)
    for p in range(producers):
        mine = [g for g in got if g.startswith(b"p%d-" % p)]
        assert mine == sorted(mine) and len(mine) == per
    # drained segments went back to the pool
    assert c.stats()["blocks_free"] == before  # only the tail segment is left


def test_queue_many_consumers_get_each_item_once(cluster):
    c = cluster.client()
    q = c.open_or_create_queue("/jobs/q2/work")
    q.multi_enqueue([b"item%d" % i for i in range(600)])
    seen: list[bytes] = []
    lock = threading.Lock()

    def consume() -> None:
        while True:
            try:
                item = q.dequeue()
            except errors.QueueEmptyError:
                return
            with lock:
                seen.append(item)

    ts = [threading.Thread(target=consume) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sorted(seen) == sorted(b"item%d" % i for i in range(600))


def test_queue_item_too_large(cluster):
    q = cluster.client().open_or_create_queue("/q/big")
    with pytest.raises(errors.ValueTooLargeError):
        q.enqueue(b"x" * (70 << 10))
    q.enqueue(b"ok")
    assert q.dequeue() == b"ok"


def test_file_write_read_seek_grows_block_by_block(cluster):
    c = cluster.client()
    f = c.open_or_create_file("/jobs/f/out")
    data = bytes(range(256)) * 1000  # 256000 B: four 64 KiB blocks
    assert f.write(data) == len(data)
    assert c.status("/jobs/f/out")["blocks"] == 4
    assert f.size() == len(data)
    f.seek(0)
    assert f.read() == data
    f.seek(65530)
    assert f.read(20) == data[65530:65550]
    f.seek(10)
    f.write(b"HELLO")
    f.seek(0)
    assert f.read(20) == data[:10] + b"HELLO" + data[15:20]
    f.seek(0, 2)
    assert f.read(10) == b""  # at EOF, like a Python file
    other = c.open_file("/jobs/f/out")
    assert other.read(5) == data[:5]


def test_file_write_far_past_the_pool_is_refused_upfront_and_takes_nothing(cluster):
    c = cluster.client()
    f = c.open_or_create_file("/g/f")
    f.write(b"head")
    free = c.stats()["blocks_free"]
    f.seek(1 << 40)
    with pytest.raises(errors.OutOfMemoryError):
        f.write(b"x")
    assert c.stats()["blocks_free"] == free and c.status("/g/f")["blocks"] == 1
    other = cluster.client().open_or_create_hash_table("/g/other")  # the pool still serves others
    other.put(b"a", b"b")
    f.seek(0)
    assert f.read() == b"head" and f.size() == 4


def test_file_grow_that_fails_midway_gives_back_what_it_took(cluster):
    c = cluster.client()
    f = c.open_or_create_file("/g/f2")
    f.write(b"a")
    ms = cluster.memory_servers[0]
    # The memory server fills up behind the controller's back (its accounting disagrees), so the
    # controller's upfront check passes and the grow is refused at the 4th of 10 new blocks.
    squat = [pack_u64(10**9 + i) for i in range(ms.num_blocks - 1 - 3)]
    cluster.call(lambda: ms.blocks.update({a: QueueBlock(ms, 0, 0, ms.block_size, 0, 0) for a in squat}))
    free = c.stats()["blocks_free"]
    f.seek(10 * ms.block_size)
    with pytest.raises(errors.OutOfMemoryError):
        f.write(b"x")
    assert c.stats()["blocks_free"] == free and c.status("/g/f2")["blocks"] == 1
    assert cluster.call(len, ms.blocks) == 1 + len(squat)  # the 3 blocks it got are freed again
    cluster.call(lambda: [ms.blocks.pop(a) for a in squat])
    f.write(b"x")  # with room, the same grow goes through
    f.seek(0)
    assert f.read(1) == b"a" and f.size() == 10 * ms.block_size + 1


def test_multi_enqueue_larger_than_a_block_is_split_by_block_capacity(cluster):
    q = cluster.client().open_or_create_queue("/q/batch")
    items = [b"%04d" % i + b"." * 20000 for i in range(10)]  # 200 KB: three 64 KiB blocks and more
    q.multi_enqueue(items)
    assert [q.dequeue() for _ in range(10)] == items


def test_multi_enqueue_with_an_item_no_block_holds_enqueues_nothing(cluster):
    q = cluster.client().open_or_create_queue("/q/refused")
    q.enqueue(b"first")
    with pytest.raises(errors.ValueTooLargeError):
        q.multi_enqueue([b"a", b"x" * (64 << 10)])
    assert len(q) == 1 and q.dequeue() == b"first"
