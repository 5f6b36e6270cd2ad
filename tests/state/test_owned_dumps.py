"""Dumps owned by a structure (DUMP's `owner`): deleted when the owner is removed or its lease
expires, remembered across a controller restart, forgotten by drop_dump or an unowned rewrite."""

from __future__ import annotations

import time

import pytest

from taureau.common import errors
from taureau.state.codec import Op


def _wait_gone(path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while path.exists():
        assert time.monotonic() < deadline, f"{path} was not deleted"
        time.sleep(0.02)


def test_an_owned_dump_goes_when_its_owner_is_removed(cluster, tmp_path):
    c = cluster.client()
    c.open_or_create_hash_table("/job/meta").put(b"pid", b"1")
    c.open_or_create_hash_table("/job/results/0").put(b"k", b"v")
    c.dump("/job/results/0", "local://spills/r0.dump", owner="/job/meta")
    c.open_or_create_hash_table("/other").put(b"k", b"v")
    c.dump("/other", "local://spills/other.dump")  # no owner: stays
    c.remove("/job/results/0")  # the dumped structure itself is not the owner
    dump = tmp_path / "state" / "spills" / "r0.dump"
    assert dump.exists()
    c.load("/job/results/0", "local://spills/r0.dump")  # an owned dump loads as any other
    assert c.open_hash_table("/job/results/0").get(b"k") == b"v"
    c.remove("/job")
    assert not dump.exists()  # removed with its owner, before the remove was answered
    assert (tmp_path / "state" / "spills" / "other.dump").exists()


def test_an_owned_dump_goes_when_its_owners_lease_expires(make_cluster, tmp_path):
    c = make_cluster(lease_ms=200).client()
    c.open_or_create_hash_table("/dead/meta").put(b"pid", b"1")
    c.open_or_create_hash_table("/dead/r").put(b"k", b"v")
    c.dump("/dead/r", "local://spills/dead.dump", owner="/dead/meta")
    c.remove("/dead/r")
    c.close("/dead/meta")  # nobody renews it any more: as if its client had died
    _wait_gone(tmp_path / "state" / "spills" / "dead.dump")
    # The dump goes while its owner is reclaimed; the emptied directory goes later in the
    # same sweep (or the next, by its own lease), so it is waited for, not expected at once.
    deadline = time.monotonic() + 10
    while c.exists("/dead"):
        assert time.monotonic() < deadline, "/dead outlived its last structure's lease"
        time.sleep(0.02)


def test_drop_dump_and_an_unowned_rewrite_end_the_ownership(cluster, tmp_path):
    c = cluster.client()
    c.open_or_create_hash_table("/j/meta").put(b"a", b"b")
    c.open_or_create_hash_table("/j/r").put(b"k", b"v")
    c.dump("/j/r", "local://a.dump", owner="/j/meta")
    c.drop_dump("local://a.dump")
    c.dump("/j/r", "local://a.dump")  # the same name again, unowned this time
    c.dump("/j/r", "local://b.dump", owner="/j/meta")
    c.dump("/j/r", "local://b.dump")  # rewritten without an owner: no longer goes with /j/meta
    c.remove("/j/meta")
    assert (tmp_path / "state" / "a.dump").exists() and (tmp_path / "state" / "b.dump").exists()


def test_a_bad_owner_is_refused_and_nothing_is_written(cluster, tmp_path):
    c = cluster.client()
    c.open_or_create_hash_table("/x/r").put(b"k", b"v")
    with pytest.raises(errors.PathNotFoundError):
        c.dump("/x/r", "local://never.dump", owner="/x/missing")
    with pytest.raises(errors.StateProtocolError, match="owner"):
        c.control(Op.DUMP, {"path": "/x/r", "dest": "local://never.dump", "owner": 7})  # not a path
    assert not (tmp_path / "state" / "never.dump").exists()
    assert c.open_hash_table("/x/r").get(b"k") == b"v"  # the controller serves on


def test_owned_dumps_outlive_a_controller_restart(durable_cluster):
    cl = durable_cluster(servers=1)
    c = cl.client()
    c.open_or_create_hash_table("/e/meta").put(b"pid", b"1")
    c.open_or_create_hash_table("/e/r").put(b"k", b"v")
    c.dump("/e/r", "local://spills/e.dump", owner="/e/meta")
    cl.restart_controller()
    cl.wait_serving(1)
    dump = cl.tmp_path / "state" / "spills" / "e.dump"
    assert dump.exists()
    c.remove("/e")  # the restarted controller knows the dump's owner from its catalog
    assert not dump.exists()
