"""Notifications across splits, two memory servers sharing a structure, and losing one."""

from __future__ import annotations

import pytest

from taureau.common import errors
from taureau.state.codec import Op
from taureau.state.notify import MAX_PER_CONNECTION


def test_notifications_keep_flowing_across_a_split(cluster):
    c = cluster.client()
    ht = c.open_or_create_hash_table("/jobs/n/ht")
    q = c.open_or_create_queue("/jobs/n/q")
    sub = c.listen("/jobs/n", ops=["put", "enqueue"])
    keys = [b"key%04d" % i for i in range(800)]  # ~150 KB: at least two splits
    for k in keys:
        ht.put(k, b"v" * 120)
    q.enqueue(b"job-1")
    ht.upsert(b"key0000", b"ignored op")  # upsert was not subscribed to
    assert c.status("/jobs/n/ht")["blocks"] >= 3
    got = []
    while (n := sub.get_notification(timeout=2)) is not None:
        got.append(n)
    puts = [n.data for n in got if n.op == "put"]
    assert sorted(puts) == keys  # every put once, including those after each split
    assert {n.path for n in got if n.op == "put"} == {"/jobs/n/ht"}
    assert [(n.op, n.path, n.data) for n in got if n.op == "enqueue"] == [("enqueue", "/jobs/n/q", b"job-1")]
    assert sub.get_notification(timeout=0.05) is None
    sub.close()


def test_subscribe_bad_input(cluster):
    c = cluster.client()
    for bad in ("nope", "/a//b", "/a/../b", "/a/"):
        with pytest.raises(errors.InvalidPathError):
            c.listen(bad)
    with pytest.raises(errors.StateProtocolError):
        c.listen("/s", ops=["explode"])
    for ops in ("put", [1], {"put": 1}):
        with pytest.raises(errors.StateProtocolError):
            c.control(Op.SUBSCRIBE, {"path": "/s", "ops": ops})
    with pytest.raises(errors.StateProtocolError):
        c.control(Op.SUBSCRIBE, {"path": 7})


def test_one_connection_holds_a_bounded_number_of_subscriptions(cluster):
    c = cluster.client()
    for i in range(MAX_PER_CONNECTION):
        c.control(Op.SUBSCRIBE, {"path": f"/s{i}"})
    with pytest.raises(errors.StateProtocolError, match="at most"):
        c.control(Op.SUBSCRIBE, {"path": "/one-more"})
    assert c.stats()["subscriptions"] == MAX_PER_CONNECTION


def test_two_memory_servers_share_one_structure(cluster):
    second = cluster.add_memory_server()
    c = cluster.client()
    assert c.stats()["servers"] == 2
    ht = c.open_or_create_hash_table("/jobs/two/ht", num_blocks=4)
    ht.multi_put({b"k%d" % i: b"v" * 100 for i in range(1500)})
    m = c.control(72, {"path": "/jobs/two/ht"})  # Op.BLOCK_MAP
    addrs = {p["chain"][0]["addr"] for p in m["partitions"]}
    assert addrs == {cluster.memory_servers[0].address, second.address}
    assert ht.multi_get([b"k%d" % i for i in range(1500)]) == [b"v" * 100] * 1500
    for i in range(0, 1500, 50):
        assert ht.get(b"k%d" % i) == b"v" * 100


def test_dead_memory_server_reports_loss_clearly_and_rest_keeps_serving(cluster):
    second = cluster.add_memory_server()
    c = cluster.client()
    ht = c.open_or_create_hash_table("/jobs/loss/ht", num_blocks=2)
    ht.multi_put({b"k%d" % i: b"v" for i in range(200)})
    m = c.control(72, {"path": "/jobs/loss/ht"})
    assert {p["chain"][0]["addr"] for p in m["partitions"]} == {
        cluster.memory_servers[0].address,
        second.address,
    }
    cluster.kill_memory_server(second)
    outcomes = set()
    for i in range(200):
        try:
            assert ht.get(b"k%d" % i) == b"v"
            outcomes.add("ok")
        except errors.BlockLostError as e:
            assert second.address in str(e)
            outcomes.add("lost")
    assert outcomes == {"ok", "lost"}  # keys on the live server still answer
    st = c.status("/jobs/loss/ht")
    assert st["state"] == "lost" and second.address in st["lost_reason"]
    assert c.stats()["servers"] == 1
    other = c.open_or_create_hash_table("/jobs/fine/ht")  # new state lands on the live server
    other.put(b"a", b"b")
    assert other.get(b"a") == b"b"
    c.remove("/jobs/loss")


def test_full_pool_is_a_typed_error_and_frees_restore_service(make_cluster):
    cl = make_cluster(num_blocks=3)
    c = cl.client()
    ht = c.open_or_create_hash_table("/jobs/full/ht")
    with pytest.raises(errors.OutOfMemoryError):
        for i in range(10000):
            ht.put(b"k%d" % i, b"v" * 200)
    assert c.stats()["blocks_free"] == 0
    with pytest.raises(errors.OutOfMemoryError):
        c.create_queue("/jobs/full/q")
    assert not c.exists("/jobs/full/q")
    assert ht.get(b"k0") == b"v" * 200  # still serving reads
    c.remove("/jobs/full")
    assert c.stats()["blocks_free"] == 3
    c.open_or_create_queue("/jobs/ok/q").enqueue(b"x")
