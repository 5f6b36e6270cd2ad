"""Isolation between jobs: a directory's block quota stops that job alone."""

from __future__ import annotations

import threading

import pytest

from taureau.common import errors
from taureau.state import Counter
from taureau.state.codec import Op


def fill(ht, prefix: bytes, n: int = 3000) -> None:
    for i in range(0, n, 100):
        ht.multi_put({prefix + b"%05d" % j: b"v" * 100 for j in range(i, i + 100)})


def test_a_job_at_its_quota_gets_out_of_memory_while_others_keep_allocating(make_cluster):
    cl = make_cluster(num_blocks=32)
    c = cl.client()
    assert c.set_quota("/jobs/a", 3) == {"path": "/jobs/a", "blocks": 3, "used": 0}  # before it exists
    a = c.open_or_create_hash_table("/jobs/a/shuffle")
    with pytest.raises(errors.OutOfMemoryError, match="quota of /jobs/a"):
        fill(a, b"a", 20000)  # far past 3 blocks of 64 KiB: its splits are refused
    assert c.quota("/jobs/a") == {"path": "/jobs/a", "blocks": 3, "used": 3}
    with pytest.raises(errors.OutOfMemoryError, match="quota of /jobs/a"):
        c.create_queue("/jobs/a/more")  # nothing refused is left behind
    assert not c.exists("/jobs/a/more")
    free = c.stats()["blocks_free"]
    assert free > 10  # the pool is far from full: only job a is stopped
    b = c.open_or_create_hash_table("/jobs/b/shuffle")
    fill(b, b"b")  # job b keeps allocating: it splits into many blocks
    assert c.status("/jobs/b/shuffle")["blocks"] > 3
    c.open_or_create("/jobs/b/counts", Counter).incr(b"x")
    assert a.get(b"a00000") == b"v" * 100  # job a still reads and rewrites what it has
    a.upsert(b"a00000", b"w")
    c.remove("/jobs/a/shuffle")  # freeing its blocks gives job a its quota back
    assert c.quota("/jobs/a")["used"] == 0
    c.open_or_create_queue("/jobs/a/next").enqueue(b"ok")
    st = c.stats()
    assert st["quotas"] == {"/jobs/a": {"blocks": 3, "used": 1}} and st["counters"]["quota_refusals"] >= 2
    assert 'taureau_state_quota_blocks_free{namespace="/jobs/a"} 2' in cl.controller.prometheus_lines()


def test_nested_quotas_all_apply_and_renames_into_a_quota_are_checked(cluster):
    c = cluster.client()
    c.set_quota("/t", 4)
    c.set_quota("/t/j1", 3)
    c.create_hash_table("/t/j1/x", num_blocks=2)
    with pytest.raises(errors.OutOfMemoryError, match="quota of /t/j1"):
        c.create_hash_table("/t/j1/y", num_blocks=2)
    c.create_hash_table("/t/j2/y", num_blocks=2)
    with pytest.raises(errors.OutOfMemoryError, match="quota of /t:"):
        c.create_queue("/t/j3/q")  # /t holds 4 already
    c.create_hash_table("/elsewhere/z", num_blocks=2)
    with pytest.raises(errors.OutOfMemoryError, match="quota of /t"):
        c.rename("/elsewhere/z", "/t/j2/z")  # would bring 2 more blocks under /t
    assert c.exists("/elsewhere/z") and not c.exists("/t/j2/z")
    c.rename("/t/j1/x", "/t/j2/x")  # within /t: already counted there
    c.set_quota("/t", None)  # dropped: /t/j3 may allocate again
    c.create_queue("/t/j3/q")
    assert c.quota("/t") == {"path": "/t", "blocks": None, "used": 5}


def test_a_quota_and_what_it_counts_survive_a_controller_restart(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    c.set_quota("/jobs/q", 2)
    c.create_hash_table("/jobs/q/h", num_blocks=2)
    cl.restart_controller()
    cl.wait_serving(1)
    assert c.quota("/jobs/q") == {"path": "/jobs/q", "blocks": 2, "used": 2}
    with pytest.raises(errors.OutOfMemoryError, match="quota"):
        c.create_queue("/jobs/q/more")


def test_concurrent_jobs_cannot_overrun_a_quota(cluster):
    c = cluster.client()
    c.set_quota("/jobs/race", 5)
    made: list[str] = []
    refused: list[str] = []

    def create(i: int) -> None:
        try:
            cluster.client().create_queue(f"/jobs/race/q{i}")
            made.append(f"q{i}")
        except errors.OutOfMemoryError:
            refused.append(f"q{i}")

    ts = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(made) == 5 and len(refused) == 7
    assert c.quota("/jobs/race")["used"] == 5


@pytest.mark.parametrize(
    "args, exc",
    [
        ({"path": "/x", "blocks": -1}, errors.StateProtocolError),
        ({"path": "/x", "blocks": "3"}, errors.StateProtocolError),
        ({"path": "/x", "blocks": True}, errors.StateProtocolError),
        ({"path": "/x", "blocks": 1.5}, errors.StateProtocolError),
        ({"path": "x", "blocks": 1}, errors.InvalidPathError),
        ({"path": "/a//b", "blocks": 1}, errors.InvalidPathError),
        ({"path": 5, "blocks": 1}, errors.StateProtocolError),
        ({"blocks": 1}, errors.StateProtocolError),
    ],
)
def test_quota_bad_input(cluster, args, exc):
    c = cluster.client()
    with pytest.raises(exc):
        c.control(Op.QUOTA, args)
    assert c.stats()["quotas"] == {}
