"""Chain replication: every block on `replicas` memory servers, writes through the head, reads
from the tail; losing a server of a chain loses nothing and the chain is mended elsewhere."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from taureau.common import errors
from taureau.state import Counter, SortedMap
from taureau.state.codec import STALE, Op, Redirect, pack_u64
from taureau.state.conn import Conn


def chains(c, path: str) -> list[list[str]]:
    return [[b["addr"] for b in p["chain"]] for p in c.control(Op.BLOCK_MAP, {"path": path})["partitions"]]


def replicas_match(cl, c, path: str) -> None:
    """Every block of every chain holds exactly what its head holds."""
    m = c.control(Op.BLOCK_MAP, {"path": path})
    servers = {ms.address: ms for ms in cl.memory_servers}

    def exports() -> list[list[list[bytes]]]:
        out = []
        for p in m["partitions"]:
            blocks = [servers[b["addr"]].blocks[pack_u64(b["alloc"])] for b in p["chain"]]
            out.append([sorted(b.export()) for b in blocks])
        return out

    for copies in cl.call(exports):
        assert all(x == copies[0] for x in copies), "a replica differs from its head"


def wait_for(pred, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_every_kind_replicates_along_chains_of_distinct_servers(durable_cluster):
    cl = durable_cluster(servers=3, num_blocks=48)
    c = cl.client()
    ht = c.open_or_create_hash_table("/r/ht", replicas=2)
    ht.multi_put({b"k%05d" % i: b"v" * 100 for i in range(3000)})  # splits: chains split too
    for i in range(2900):
        ht.remove(b"k%05d" % i)  # nearly empty blocks merge (chains merge too)
    ctr = c.open_or_create("/r/ctr", Counter, replicas=3)
    ctr.multi_incr({b"c%d" % i: i for i in range(500)})
    sm = c.open_or_create("/r/sm", SortedMap, replicas=2)
    sm.multi_put({b"%04d" % i: b"s" for i in range(1500)})
    q = c.open_or_create_queue("/r/q", replicas=2)
    q.multi_enqueue([b"item%04d" % i + b"y" * 100 for i in range(1200)])  # several segments
    for _ in range(100):
        q.dequeue()
    f = c.open_or_create_file("/r/f", replicas=3)
    f.write(b"abc" * 60000)
    for path, r in [("/r/ht", 2), ("/r/ctr", 3), ("/r/sm", 2), ("/r/q", 2), ("/r/f", 3)]:
        got = chains(c, path)
        assert got and all(len(ch) == len(set(ch)) == r for ch in got), (path, got)
        assert c.status(path)["replicas"] == r
        replicas_match(cl, c, path)
    assert c.stats()["counters"]["splits"] > 2 and c.stats()["counters"]["merges"] > 0
    assert c.stats()["blocks_used"] == sum(
        len(ch) for p in ("/r/ht", "/r/ctr", "/r/sm", "/r/q", "/r/f") for ch in chains(c, p)
    )
    assert ht.multi_get([b"k%05d" % i for i in range(2900, 3000)]) == [b"v" * 100] * 100 and len(ht) == 100
    assert ctr.get(b"c499") == 499 and sm.range(limit=2) == [(b"0000", b"s"), (b"0001", b"s")]
    assert q.dequeue() == b"item0100" + b"y" * 100 and len(q) == 1099
    f.seek(0)
    assert f.read() == b"abc" * 60000


def test_multi_insert_replicates_what_the_head_decided(durable_cluster):
    cl = durable_cluster(servers=2)
    c = cl.client()
    ht = c.open_or_create_hash_table("/r/claims", replicas=2)
    ht.multi_put({b"c%03d" % i: b"first" for i in range(0, 400, 2)})
    got = ht.multi_insert({b"c%03d" % i: b"second" for i in range(400)})
    assert got == [b"first" if i % 2 == 0 else None for i in range(400)]
    replicas_match(cl, c, "/r/claims")
    assert ht.multi_get([b"c000", b"c001"]) == [b"first", b"second"]  # read at the tail


def test_losing_a_server_loses_nothing_and_chains_are_mended(durable_cluster):
    cl = durable_cluster(servers=3, num_blocks=48)
    c = cl.client()
    ht = c.open_or_create_hash_table("/m/ht", replicas=2)
    ht.multi_put({b"k%05d" % i: b"v" * 100 for i in range(2000)})
    q = c.open_or_create_queue("/m/q", replicas=2)
    q.multi_enqueue([b"i%04d" % i for i in range(300)])
    victim = cl.memory_servers[1]
    assert any(victim.address in ch for ch in chains(c, "/m/ht"))
    cl.run(victim.close())
    cl.memory_servers.remove(victim)
    wait_for(lambda: all(victim.address not in ch and len(ch) == 2 for ch in chains(c, "/m/ht")))
    assert c.status("/m/ht")["state"] == "active" and c.stats()["counters"]["repairs"] > 0
    assert ht.multi_get([b"k%05d" % i for i in range(2000)]) == [b"v" * 100] * 2000
    assert [q.dequeue() for _ in range(300)] == [b"i%04d" % i for i in range(300)]
    replicas_match(cl, c, "/m/ht")
    ht.multi_put({b"n%05d" % i: b"w" for i in range(500)})  # and it goes on


def test_a_chain_with_no_server_to_refill_it_goes_on_shorter_and_losing_all_is_lost(durable_cluster):
    cl = durable_cluster(servers=2)
    c = cl.client()
    ht = c.open_or_create_hash_table("/s/ht", replicas=2)
    ht.multi_put({b"k%d" % i: b"v" for i in range(100)})
    first, second = cl.memory_servers
    cl.run(first.close())
    cl.memory_servers.remove(first)
    wait_for(lambda: all(ch == [second.address] for ch in chains(c, "/s/ht")))
    assert ht.multi_get([b"k%d" % i for i in range(100)]) == [b"v"] * 100
    ht.put(b"after", b"x")
    cl.run(second.close())
    cl.memory_servers.remove(second)
    wait_for(lambda: c.status("/s/ht")["state"] == "lost")
    with pytest.raises(errors.BlockLostError):
        ht.get(b"k1")


def test_replicated_structures_survive_a_controller_restart(durable_cluster):
    cl = durable_cluster(servers=3)
    c = cl.client()
    ht = c.open_or_create_hash_table("/c/ht", replicas=3)
    ht.multi_put({b"k%05d" % i: b"v" * 50 for i in range(1500)})
    before = chains(c, "/c/ht")
    cl.restart_controller()
    cl.wait_serving(3)
    wait_for(lambda: c.stats()["unsettled"] == 0)
    assert chains(c, "/c/ht") == before
    assert ht.multi_get([b"k%05d" % i for i in range(1500)]) == [b"v" * 50] * 1500
    ht.multi_put({b"n%05d" % i: b"w" * 50 for i in range(1500)})
    replicas_match(cl, c, "/c/ht")


def test_replicas_bad_input(durable_cluster):
    cl = durable_cluster(servers=2)
    c = cl.client()
    for bad in (0, 9, "2", True, 1.5):
        with pytest.raises(errors.StateProtocolError, match="replicas"):
            c.control(Op.CREATE, {"path": "/b/x", "kind": "hash_table", "replicas": bad})
    with pytest.raises(errors.OutOfMemoryError, match="distinct servers"):
        c.create_hash_table("/b/x", replicas=3)  # two servers cannot hold a chain of three
    assert not c.exists("/b/x") and c.stats()["blocks_used"] == 0


def test_chain_roles_are_enforced_on_the_wire(durable_cluster):
    cl = durable_cluster(servers=2)
    c = cl.client()
    ht = c.open_or_create_hash_table("/w/ht", replicas=2)
    ht.put(b"k", b"v")
    p = ht._parts[0]
    head, tail = Conn(p.addr, 5), Conn(p.raddr, 5)
    for conn, op, fields in [
        (tail, Op.PUT, [p.ralloc, b"x", b"y"]),  # a write at the tail
        (head, Op.GET, [p.alloc, b"k"]),  # a read at the head
    ]:
        with pytest.raises(Redirect) as r:
            conn.call(op, fields)
        assert r.value.code == STALE
    for conn, op, fields in [
        (head, Op.CHAIN_WRITE, [p.alloc, bytes([Op.PUT]), b"x", b"y"]),  # the head follows nobody
        (tail, Op.CHAIN_WRITE, [p.ralloc, bytes([Op.GET]), b"k"]),  # not a write
        (tail, Op.CHAIN_WRITE, [p.ralloc, b"", b"k"]),
        (tail, Op.INSTALL, [p.ralloc, b'{"lo":0,"hi":1,"state":"active","importing":null}']),  # not frozen
    ]:
        with pytest.raises(errors.StateProtocolError):
            conn.call(op, fields)
    for op in (Op.CHAIN, Op.SYNC):
        with pytest.raises(errors.StateProtocolError, match="from the controller only"):
            head.call(op, [b"{}"])
    assert ht.get(b"k") == b"v" and not ht.exists(b"x")


def test_kill_9_of_a_memory_server_in_the_middle_of_writes(durable_cluster):
    """Three memory server processes, chains of two; one is killed while three writers run."""
    cl = durable_cluster(servers=0)
    cmd = [sys.executable, "-m", "taureau.cli.state_cmd", "memory-server", "--controller", cl.address,
           "--internal-secret-file", str(cl.secret_file)]
    procs = [subprocess.Popen([*cmd, "--block-size", "64KiB", "--blocks", "64"]) for _ in range(3)]
    try:
        cl.wait_serving(3)
        c = cl.client()
        ht = c.open_or_create_hash_table("/k/ht", replicas=2)
        ctr = c.open_or_create("/k/ctr", Counter, replicas=2)
        acked: dict[str, list] = {"ht": [], "incr": [], "incr_unknown": []}
        stop = threading.Event()

        def put_writer() -> None:
            h = cl.client().open("/k/ht", type(ht))
            i = 0
            while not stop.is_set():
                h.upsert(b"key%06d" % i, b"v" * 100)
                acked["ht"].append(b"key%06d" % i)
                i += 1

        def incr_writer() -> None:
            h = cl.client().open("/k/ctr", Counter)
            while not stop.is_set():
                try:
                    acked["incr"].append(h.incr(b"total"))
                except errors.StateUnavailableError:  # its head died mid-call: applied or not
                    acked["incr_unknown"].append(1)

        ts = [threading.Thread(target=put_writer), threading.Thread(target=incr_writer)]
        for t in ts:
            t.start()
        wait_for(lambda: len(acked["ht"]) > 1500)  # several splits in
        victim = procs[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        at_kill = len(acked["ht"])
        wait_for(lambda: len(acked["ht"]) > at_kill + 500)  # writes go on through the repair
        stop.set()
        for t in ts:
            t.join(60)
        dead = {a for ch in chains(c, "/k/ht") for a in ch} - {
            s["address"] for s in c.stats()["memory_servers"]
        }
        assert not dead, f"chains still name dead servers: {dead}"
        assert all(len(ch) == 2 for ch in chains(c, "/k/ht") + chains(c, "/k/ctr"))
        assert c.status("/k/ht")["state"] == "active" and c.stats()["counters"]["repairs"] >= 1
        assert ht.multi_get(acked["ht"]) == [b"v" * 100] * len(acked["ht"])  # nothing acked is lost
        total = ctr.get(b"total")
        assert (
            acked["incr"] == list(range(1, len(acked["incr"]) + 1)) or sorted(acked["incr"]) == acked["incr"]
        )
        assert len(acked["incr"]) <= total <= len(acked["incr"]) + len(acked["incr_unknown"])
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_a_short_chain_is_refilled_when_a_server_joins(durable_cluster):
    cl = durable_cluster(servers=2)
    c = cl.client()
    ht = c.open_or_create_hash_table("/h/ht", replicas=2)
    ht.multi_put({b"k%d" % i: b"v" * 50 for i in range(500)})
    gone = cl.memory_servers[0]
    cl.run(gone.close())
    cl.memory_servers.remove(gone)
    wait_for(lambda: all(len(ch) == 1 for ch in chains(c, "/h/ht")))
    ht.multi_put({b"n%d" % i: b"w" for i in range(100)})  # written while the chains are short
    joined = cl.add_memory_server()
    wait_for(lambda: all(len(ch) == 2 and joined.address in ch for ch in chains(c, "/h/ht")))
    replicas_match(cl, c, "/h/ht")
    assert ht.multi_get([b"n%d" % i for i in range(100)]) == [b"w"] * 100
