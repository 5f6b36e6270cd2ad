"""Reconciling a structure's saved map with its blocks after a controller crash: the rules
(recovery.reconcile, pure) and the crash points of split, append and merge, for real."""

from __future__ import annotations

import asyncio
import time

import pytest

from taureau.common import errors
from taureau.state import codec, kinds
from taureau.state.blocks import NUM_SLOTS, entry_cost, item_cost
from taureau.state.codec import Op, pack_u64
from taureau.state.conn import Conn
from taureau.state.limits import CONTROL_MAX
from taureau.state.namespace import BlockRef, Node, Partition
from taureau.state.recovery import BlockReport, reconcile
from tests.state.helpers import prove


def node(kind: str, *parts: tuple[int, int, int]) -> Node:
    n = Node("x", None, kind, 0.0, struct_id=7)
    n.partitions = [Partition(lo, hi, [BlockRef(1, alloc)]) for lo, hi, alloc in parts]
    return n


def rep(alloc: int, lo: int, hi: int, state: str = "active", importing=None, empty=False, kind="hash_table"):
    return BlockReport(alloc, 7, kind, lo, hi, state, importing, empty)


def reports(*rs: BlockReport) -> dict[int, BlockReport]:
    return {r.alloc: r for r in rs}


def fix(n: Node, reps: dict[int, BlockReport]):
    return reconcile(n, reps, kinds.get(n.kind).layout)


def spans(parts: list[Partition]) -> list[tuple[int, int, int, bool]]:
    return [(p.lo, p.hi, p.chain[0].alloc, p.lost) for p in parts]


def test_split_that_never_moved_its_keys_frees_the_target():
    n = node("hash_table", (0, 100, 1), (100, NUM_SLOTS, 2))  # saved: source cut at 100
    r = fix(n, reports(rep(1, 0, NUM_SLOTS), rep(2, 100, NUM_SLOTS, "importing")))
    assert spans(r.partitions) == [(0, NUM_SLOTS, 1, False)] and [b.alloc for b in r.free] == [2]
    assert r.lost == 0


def test_split_that_finished_keeps_both_halves():
    n = node("hash_table", (0, 100, 1), (100, NUM_SLOTS, 2))
    r = fix(n, reports(rep(1, 0, 100), rep(2, 100, NUM_SLOTS)))
    assert spans(r.partitions) == [(0, 100, 1, False), (100, NUM_SLOTS, 2, False)] and not r.free


def test_split_target_whose_source_died_is_lost():
    n = node("hash_table", (0, 100, 1), (100, NUM_SLOTS, 2))
    r = fix(n, reports(rep(2, 100, NUM_SLOTS, "importing")))  # block 1's server is gone
    assert spans(r.partitions) == [(0, 100, 1, True), (100, NUM_SLOTS, 2, True)] and r.lost == 2


def test_merge_that_never_moved_narrows_the_target_back():
    n = node("hash_table", (0, 100, 1), (100, NUM_SLOTS, 2))  # 1 was merging into 2
    r = fix(n, reports(rep(1, 0, 100), rep(2, 0, NUM_SLOTS, importing=(0, 100))))
    assert spans(r.partitions) == [(0, 100, 1, False), (100, NUM_SLOTS, 2, False)]
    assert [(b.alloc, lo, hi) for b, lo, hi in r.narrow] == [(2, 100, NUM_SLOTS)]
    r = fix(
        node("hash_table", (0, 100, 2), (100, 200, 1)),
        reports(rep(2, 0, 200, importing=(100, 200)), rep(1, 100, 200)),
    )
    assert [(b.alloc, lo, hi) for b, lo, hi in r.narrow] == [(2, 0, 100)]  # merging in from above


def test_merge_that_moved_drops_the_forwarded_source():
    n = node("hash_table", (0, 100, 1), (100, NUM_SLOTS, 2))
    r = fix(n, reports(rep(1, 0, 100, "forwarded"), rep(2, 0, NUM_SLOTS)))
    assert spans(r.partitions) == [(0, NUM_SLOTS, 2, False)] and [b.alloc for b in r.free] == [1]
    r = fix(n, reports(rep(2, 0, NUM_SLOTS, importing=(0, 100))))  # the source died mid-move
    assert spans(r.partitions) == [(0, 100, 1, True), (0, NUM_SLOTS, 2, True)]


def test_queue_segments_are_sealed_dropped_or_given_a_tail():
    q = node("queue", (0, 0, 1), (0, 0, 2), (0, 0, 3))
    r = fix(
        q,
        reports(
            rep(1, 0, 0, "sealed", empty=True, kind="queue"),
            rep(2, 0, 0, kind="queue"),
            rep(3, 0, 0, kind="queue"),
        ),
    )
    assert [p.chain[0].alloc for p in r.partitions] == [2, 3]
    assert [b.alloc for b in r.free] == [1] and [b.alloc for b in r.seal] == [2] and not r.needs_tail
    r = fix(q, reports(*(rep(a, 0, 0, "sealed", kind="queue") for a in (1, 2, 3))))
    assert r.needs_tail and not r.seal and not r.free


def test_a_block_of_another_kind_or_structure_is_not_taken():
    f = node("file", (0, 10, 1), (10, 20, 2))
    r = fix(f, reports(rep(1, 0, 10, kind="file"), BlockReport(2, 8, "file", 10, 20, "active", None, False)))
    assert spans(r.partitions) == [(0, 10, 1, False), (10, 20, 2, True)]


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"alloc": "x"},
        {"alloc": 1, "struct": 1, "kind": "q", "lo": 0, "hi": 1, "state": "a", "importing": 5, "empty": 0},
    ],
)
def test_malformed_block_reports_are_refused(bad):
    with pytest.raises(errors.StateProtocolError):
        BlockReport.parse(bad)


# -- crash points, end to end -----------------------------------------------------------------


def hold(cl, op: int) -> None:
    """From now on the controller never gets `op` through to any memory server: as if it died
    right before sending it."""

    def install() -> None:
        for srv in cl.controller.alloc.servers.values():
            real = srv.peer.call

            def call(o, fields, real=real):
                if o == op:
                    return asyncio.get_running_loop().create_future()  # never answered
                return real(o, fields)

            srv.peer.call = call

    cl.call(install)


def wait_for(pred, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def settled(cl, path: str) -> bool:
    return cl.call(lambda: not cl.controller.ns.lookup(path).busy)


def held_blocks(cl) -> int:
    return cl.call(lambda: sum(len(ms.blocks) for ms in cl.memory_servers))


def test_crash_after_a_split_was_saved_but_before_it_moved_keys(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    ht = c.open_or_create_hash_table("/jobs/s/ht")
    hold(cl, Op.SPLIT)
    n = int(0.95 * (64 << 10) / entry_cost(4, 120))  # past the 90% watermark, within the block
    data = {b"k%03d" % i: b"v" * 120 for i in range(n)}
    ht.multi_put(data)
    wait_for(lambda: c.status("/jobs/s/ht")["blocks"] == 2)  # target allocated and saved
    assert held_blocks(cl) == 2
    cl.restart_controller()
    cl.wait_serving(1)
    wait_for(lambda: settled(cl, "/jobs/s/ht"))
    assert c.status("/jobs/s/ht")["blocks"] == 1 and held_blocks(cl) == 1  # the target is freed
    assert ht.multi_get(list(data)) == list(data.values())
    ht.multi_put({b"more%04d" % i: b"w" * 120 for i in range(1000)})  # and it splits for real now
    assert c.status("/jobs/s/ht")["blocks"] >= 3 and ht.get(b"k000") == b"v" * 120


def test_crash_after_a_queue_tail_was_saved_but_before_the_old_one_was_sealed(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    q = c.open_or_create_queue("/jobs/q/q")
    hold(cl, Op.LINK_NEXT)
    n = int(0.95 * (64 << 10) / item_cost(104))  # past the 90% watermark, within the block
    items = [b"i%03d" % i + b"x" * 100 for i in range(n)]
    q.multi_enqueue(items)
    wait_for(lambda: held_blocks(cl) == 2)  # the new tail exists (and is in the saved map)
    cl.restart_controller()
    cl.wait_serving(1)
    wait_for(lambda: settled(cl, "/jobs/q/q"))
    assert c.status("/jobs/q/q")["blocks"] == 2
    q.refresh()
    q.enqueue(b"after")  # goes to the new tail: the old one was sealed by the repair
    assert [q.dequeue() for _ in range(n + 1)] == [*items, b"after"]
    with pytest.raises(errors.QueueEmptyError):
        q.dequeue()


def test_crash_after_a_merge_target_widened_but_before_anything_moved(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    ht = c.open_or_create_hash_table("/jobs/m/ht", num_blocks=2)
    keys = [b"k%d" % i for i in range(40)]
    ht.multi_put({k: b"v" for k in keys})
    hold(cl, Op.MERGE_OUT)
    ht.remove(keys.pop())  # both blocks are nearly empty: one asks to merge
    wait_for(lambda: cl.call(lambda: any(b.importing for b in cl.memory_servers[0].blocks.values())))
    cl.restart_controller()
    cl.wait_serving(1)
    wait_for(lambda: settled(cl, "/jobs/m/ht"))
    assert c.status("/jobs/m/ht")["blocks"] == 2
    assert not cl.call(lambda: any(b.importing for b in cl.memory_servers[0].blocks.values()))
    ht.refresh()
    assert ht.multi_get(keys) == [b"v"] * len(keys)
    time.sleep(1.1)  # the refused merge may be asked for again; then it happens for real
    ht.remove(keys.pop())
    wait_for(lambda: c.status("/jobs/m/ht")["blocks"] == 1)
    assert ht.multi_get(keys) == [b"v"] * len(keys)


# -- bad input on the membership path ---------------------------------------------------------------


def raw(cl) -> Conn:
    """A connection to the controller that proved the internal secret (a memory server's)."""
    conn = Conn(cl.address, 5, CONTROL_MAX)
    prove(conn, cl.secret)
    return conn


def register(conn: Conn, **over):
    args = {"address": "127.0.0.1:1", "block_size": 65536, "num_blocks": 4, **over}
    return codec.unpack_json(conn.call(Op.REGISTER, codec.pack_json(args)))


@pytest.mark.parametrize(
    "bad",
    [{"address": 5}, {"block_size": "big"}, {"block_size": 100}, {"num_blocks": 0}, {"block_size": 1 << 31}],
)
def test_register_bad_input(durable_cluster, bad):
    cl = durable_cluster(servers=1)
    with pytest.raises(errors.StateProtocolError):
        register(raw(cl), **bad)
    assert cl.client().stats()["servers"] == 1


def test_register_and_report_refusals(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    conn = raw(cl)
    with pytest.raises(errors.StateProtocolError, match="registering"):
        conn.call(Op.REPORT, codec.pack_json({"blocks": [], "done": True}))  # not registered
    taken = cl.memory_servers[0].link.server_id
    with pytest.raises(errors.StateProtocolError, match="registered already"):
        register(raw(cl), server_id=taken)
    register(conn)
    with pytest.raises(errors.StateProtocolError, match="already registered"):
        register(conn)
    for blocks in (
        "x",
        [{"alloc": 1}],
        [
            dict(alloc=i, struct=1, kind="queue", lo=0, hi=0, state="active", importing=None, empty=True)
            for i in range(5)
        ],
    ):
        with pytest.raises(errors.StateProtocolError):
            conn.call(Op.REPORT, codec.pack_json({"blocks": blocks}))
    assert c.stats()["servers"] == 1  # the half-registered one never serves
    conn.close()
    wait_for(lambda: c.stats()["servers_joining"] == 0)


def test_block_commands_from_a_client_are_refused_by_memory_servers(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    ht = c.open_or_create_hash_table("/x/ht")
    alloc = ht._parts[0].alloc
    conn = Conn(cl.memory_servers[0].address, 5)
    for op, args in [(Op.DESCRIBE, {"allocs": [1]}), (Op.RESET_RANGE, {"alloc": 1, "lo": 0, "hi": 1})]:
        with pytest.raises(errors.StateProtocolError, match="from the controller only"):
            conn.call(op, codec.pack_json(args))
    ms = cl.memory_servers[0]
    aid = codec.unpack_u64(alloc)
    with pytest.raises(errors.StateProtocolError, match="no merge to undo"):
        cl.call(ms._reset_range, codec.pack_json({"alloc": aid, "lo": 0, "hi": 10}))
    with pytest.raises(errors.StateError, match="no block") as e:
        cl.call(ms._reset_range, codec.pack_json({"alloc": 10**6, "lo": 0, "hi": 1}))
    assert type(e.value) is errors.StateError


def test_a_structure_removed_while_it_splits_is_not_written_back(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    ht = c.open_or_create_hash_table("/jobs/rm/ht")
    held: list[asyncio.Future] = []

    def install() -> None:
        srv = next(iter(cl.controller.alloc.servers.values()))
        real = srv.peer.call

        def call(o, fields):
            if o == Op.SPLIT:
                held.append(asyncio.get_running_loop().create_future())
                return held[-1]
            return real(o, fields)

        srv.peer.call = call

    cl.call(install)
    n = int(0.95 * (64 << 10) / entry_cost(4, 120))
    ht.multi_put({b"k%03d" % i: b"v" * 120 for i in range(n)})  # asks for a split, which is held
    wait_for(lambda: cl.call(lambda: bool(held)))
    c.remove("/jobs/rm")  # while the split waits
    cl.call(lambda: held[0].set_exception(errors.StateUnavailableError("the split failed")))
    wait_for(lambda: cl.call(lambda: not cl.memory_servers[0].blocks))  # every block freed
    cat = cl.controller.catalog
    assert cl.run(cat.store.children(f"{cat.root}/structures")) == []  # and no record came back
    cl.restart_controller()
    cl.wait_serving(1)
    assert not c.exists("/jobs/rm") and c.stats()["blocks_used"] == 0


def test_a_segment_drained_while_its_queue_is_busy_is_dropped_after(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    q = c.open_or_create_queue("/jobs/dq/q")
    n = int(0.95 * (64 << 10) / item_cost(104))
    q.multi_enqueue([b"i%03d" % i + b"x" * 100 for i in range(2 * n)])  # two segments or more
    segments = c.status("/jobs/dq/q")["blocks"]
    assert segments >= 2
    node = cl.call(lambda: cl.controller.ns.lookup("/jobs/dq/q"))
    first = cl.call(lambda: cl.memory_servers[0].blocks[pack_u64(node.partitions[0].chain[0].alloc)])
    in_first = cl.call(lambda: len(first.items))
    cl.call(lambda: setattr(node, "busy", True))  # as while a restart reconciles it
    for _ in range(in_first):  # empties the first, sealed segment: its DRAINED waits for the map
        q.dequeue()
    time.sleep(0.3)
    assert c.status("/jobs/dq/q")["blocks"] == segments
    cl.call(lambda: setattr(node, "busy", False))
    wait_for(lambda: c.status("/jobs/dq/q")["blocks"] == segments - 1)
    assert q.dequeue() == b"i%03d" % in_first + b"x" * 100
