"""The merge protocol against an in-memory table with the state store's semantics, including
the interleavings that decide exactly-once: a commit racing a seal, two sealers, a late
partial after collection."""

from __future__ import annotations

import pytest

from taureau.common.errors import DuplicateKeyError, KeyNotFoundError
from taureau.sketches import protocol

W = 1000  # window length


class MemoryTable:
    """put inserts (DuplicateKeyError), upsert overwrites, remove needs the key."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.before_put = None  # hook: runs before each put, to interleave another party

    def put(self, key: bytes, value: bytes) -> None:
        if self.before_put is not None:
            hook, self.before_put = self.before_put, None
            hook()
        if key in self.data:
            raise DuplicateKeyError(key)
        self.data[key] = value

    def upsert(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def remove(self, key: bytes) -> None:
        if key not in self.data:
            raise KeyNotFoundError(key)
        del self.data[key]

    def multi_get(self, keys):
        return [self.data.get(k) for k in keys]


def sealed(t: MemoryTable, end: int) -> list[bytes]:
    return [p.data for p in protocol.seal(t, end)]


def test_partials_of_one_window_are_sealed_in_slot_order():
    t = MemoryTable()
    for i in range(3):
        assert protocol.commit(t, 5000, W, b"p%d" % i) == 5000
    assert sealed(t, 5000) == [b"p0", b"p1", b"p2"]
    assert sealed(t, 5000) == [b"p0", b"p1", b"p2"]  # a second sealer agrees


def test_a_commit_after_the_seal_moves_to_the_next_window():
    t = MemoryTable()
    protocol.commit(t, 5000, W, b"early")
    assert sealed(t, 5000) == [b"early"]
    assert protocol.commit(t, 5000, W, b"late") == 6000
    assert sealed(t, 5000) == [b"early"]
    assert sealed(t, 6000) == [b"late"]


def test_a_seal_landing_between_a_commits_slot_scan_and_insert():
    # The committer finds slot 1 free, but the sealer takes it first: the committer's insert
    # fails, it takes slot 2, sees the SEAL at 1 and moves on. Nothing is merged twice or lost.
    t = MemoryTable()
    protocol.commit(t, 5000, W, b"a")
    t.before_put = lambda: t.data.setdefault(protocol.slot_key(5000, 1), protocol.SEAL)
    assert protocol.commit(t, 5000, W, b"b") == 6000
    assert sealed(t, 5000) == [b"a"]
    assert sealed(t, 6000) == [b"b"]
    assert protocol.slot_key(5000, 2) not in t.data  # the moved partial left no slot behind


def test_a_commit_landing_while_the_sealer_scans():
    # The sealer reads slot 1 empty, but a commit takes it before the SEAL insert: the sealer
    # reads it again and merges it.
    t = MemoryTable()
    protocol.commit(t, 5000, W, b"a")
    t.before_put = lambda: t.data.setdefault(protocol.slot_key(5000, 1), protocol.PARTIAL + b"b")
    assert sealed(t, 5000) == [b"a", b"b"]


def test_collected_windows_send_late_partials_forward():
    t = MemoryTable()
    protocol.commit(t, 5000, W, b"a")
    partials = protocol.seal(t, 5000)
    protocol.collect(t, 5000, len(partials))
    assert protocol.gc_mark(t) == 5000
    assert not any(k.startswith(b"5000/") for k in t.data)
    assert protocol.commit(t, 5000, W, b"late") == 6000  # the slots are gone, the mark is not
    assert protocol.has_commits(t, [5000, 6000, 7000]) == [6000]


def test_a_full_window_is_an_error_not_a_loop():
    t = MemoryTable()
    for n in range(protocol.MAX_SLOTS):
        t.data[protocol.slot_key(1000, n)] = protocol.PARTIAL
    with pytest.raises(protocol.ProtocolError):
        protocol.commit(t, 1000, W, b"x")


def test_a_slot_names_its_commit():
    t = MemoryTable()
    protocol.commit(t, 5000, W, b"legacy")
    protocol.commit(t, 5000, W, b"named", b"7.abc")
    assert protocol.seal(t, 5000) == [protocol.Partial(None, b"legacy"), protocol.Partial(b"7.abc", b"named")]
    with pytest.raises(ValueError):
        protocol.encode_slot(b"x", b"bad\nid")
