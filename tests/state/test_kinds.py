"""The registry of structure kinds: a new kind is one module; nothing else needs to know it."""

from __future__ import annotations

import pytest

from taureau.common import errors
from taureau.state import kinds
from taureau.state.blocks import NUM_SLOTS, KeyedBlock, slot_of
from taureau.state.codec import Op
from taureau.state.handles import KeyedHandle
from taureau.state.kinds import Kind
from taureau.state.layouts import Ranges
from taureau.state.persist import decode_dump, encode_dump

# A kind written as a user of the registry would: a set of keys, in this test module only.


class KeySetBlock(KeyedBlock):
    kind = "test_key_set"


class KeySet(KeyedHandle):
    kind = "test_key_set"

    def add(self, key: bytes) -> None:
        self._op(Op.PUT, key, b"")  # the keyed block's put, with an empty value

    def __contains__(self, key: bytes) -> bool:
        return self.exists(key)


kinds.register(
    Kind("test_key_set", 200, Ranges(NUM_SLOTS, slot_of), KeySetBlock, KeySet, frozenset({"put", "remove"}))
)


def test_a_kind_from_one_module_is_created_grown_dumped_restarted_and_notified(durable_cluster):
    cl = durable_cluster(servers=2)
    c = cl.client()
    sub = c.listen("/jobs/k", ops=["put"])
    s = c.open_or_create("/jobs/k/set", KeySet)
    keys = [b"member-%05d" % i for i in range(3000)]  # several 64 KiB blocks
    for k in keys:
        s.add(k)
    assert c.status("/jobs/k/set")["blocks"] >= 3 and c.ls("/jobs/k")[0]["kind"] == "test_key_set"
    assert sub.get_notification(timeout=5).data == keys[0]
    c.dump("/jobs/k/set", "local://set.dump")
    cl.restart_controller()
    cl.wait_serving(2)
    assert all(k in s for k in keys[::97]) and len(s) == 3000
    c.load("/jobs/k/copy", "local://set.dump")
    assert len(c.open("/jobs/k/copy", KeySet)) == 3000


def test_registry_refuses_clashes_and_unknown_kinds():
    hash_kind = kinds.get("hash_table")
    with pytest.raises(ValueError):
        kinds.register(hash_kind)  # name and code taken
    with pytest.raises(ValueError):
        kinds.register(Kind("other", 1, hash_kind.layout, KeySetBlock, KeySet, frozenset()))  # code taken
    with pytest.raises(ValueError):
        kinds.register(Kind("mismatch", 201, hash_kind.layout, KeySetBlock, KeySet, frozenset()))
    for bad in ("nope", None, 3):
        with pytest.raises(errors.StateProtocolError):
            kinds.get(bad)
    with pytest.raises(errors.BackingStoreError):
        kinds.by_code(99)
    assert {"hash_table", "queue", "file", "counter", "sorted_map"} <= set(kinds.names())
    assert decode_dump(encode_dump("sorted_map", [b"k", b"v"])) == ("sorted_map", [b"k", b"v"])
    foreign = bytearray(encode_dump("queue", []))
    foreign[5] = 99  # the kind byte of a kind nobody registered
    with pytest.raises(errors.BackingStoreError):
        decode_dump(bytes(foreign))


def test_creating_an_unknown_kind_is_refused(cluster):
    c = cluster.client()
    for kind in ("nope", 7, None):
        with pytest.raises(errors.StateProtocolError, match="unknown structure kind"):
            c.control(Op.CREATE, {"path": "/x/y", "kind": kind})
    assert not c.exists("/x")
