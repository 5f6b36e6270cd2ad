"""The pure namespace: paths, renames, lease renewal and the expiry decision."""

from __future__ import annotations

import pytest

from taureau.common import errors
from taureau.state.namespace import Namespace, NodeState, split_path


@pytest.mark.parametrize(
    "bad", ["", "a/b", "/a//b", "/a/", "/a/../b", "/a/./b", "/a/\x00", "/" + "x" * 1100, None]
)
def test_invalid_paths(bad):
    with pytest.raises(errors.InvalidPathError):
        split_path(bad)


def test_create_rename_detach():
    ns = Namespace()
    ht = ns.create("/jobs/j1/t1/ht", "hash_table", 10.0, 1)
    assert ns.lookup("/jobs/j1/t1").kind == "dir" and ht.path == "/jobs/j1/t1/ht"
    with pytest.raises(errors.PathExistsError):
        ns.create("/jobs/j1/t1/ht", "queue", 10.0, 2)
    with pytest.raises(errors.WrongTypeError):
        ns.create("/jobs/j1/t1/ht/x", "queue", 10.0, 3)
    with pytest.raises(errors.InvalidPathError):
        ns.rename("/jobs/j1", "/jobs/j1/inner")
    ns.rename("/jobs/j1/t1", "/jobs/j2/t1")
    assert ns.by_id[ht.struct_id].path == "/jobs/j2/t1/ht"
    assert [n.path for n in ns.detach(ns.lookup("/jobs/j2"))] == ["/jobs/j2/t1/ht"]
    assert not ns.by_id and not ns.exists("/jobs/j2")
    with pytest.raises(errors.InvalidPathError):
        ns.detach(ns.root)


def test_expiry_decisions():
    ns = Namespace()
    ns.create("/a/live", "hash_table", 100.0, 4)
    ns.create("/a/dead", "queue", 1.0, 5)
    ns.create("/b/pinned", "file", 1.0, 6, pinned=True)
    ns.create("/c/dead", "file", 1.0, 7)
    m = ns.create("/d/mapped", "hash_table", 1.0, 8, mapped=True, backing="local://m")
    for d in ("/a", "/b", "/c", "/d"):
        ns.lookup(d).lease_until = 1.0
    gone = {n.path for n in ns.expired(now=5.0, grace=2.0)}
    # /a stays for its live child, /b for its pinned child, /d for its mapped child (flushed, kept)
    assert gone == {"/a/dead", "/c/dead", "/c", "/d/mapped"}
    m.set_state(NodeState.FLUSHED)
    assert "/d/mapped" not in {n.path for n in ns.expired(now=5.0, grace=2.0)}
    with pytest.raises(errors.StateError):
        m.set_state(NodeState.LOST)  # a flushed structure has no blocks to lose


def test_renew_reaches_ancestors_and_descendants():
    ns = Namespace()
    leaf = ns.create("/j/t/leaf", "hash_table", 1.0, 9)
    other = ns.create("/k/x", "hash_table", 1.0, 10)
    ns.renew("/j/t", 50.0)
    assert leaf.lease_until == 50.0 and ns.lookup("/j").lease_until == 50.0
    assert other.lease_until == 1.0
