"""Hash table: bytes keys to bytes values, partitioned by CRC16 slot (as Redis Cluster)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from taureau.common import errors
from taureau.state import codec
from taureau.state.blocks import NUM_SLOTS, KeyedBlock, slot_of
from taureau.state.handles import KeyValueHandle, as_pairs
from taureau.state.kinds import Kind, register
from taureau.state.layouts import Ranges

# Semantics are Jiffy's: put inserts and raises DuplicateKeyError if the key is there, upsert
# overwrites, update needs the key, remove/get raise KeyNotFoundError; multi_put upserts a
# batch, multi_get answers None for a missing key (as MGET). Every op is the keyed block's,
# plus one of the hash table's own:
#
#   MULTI_INSERT  fields: alloc, (key, value)*
#                 reply: a flag byte per pair (1: inserted, 0: the key was there), then the
#                 value held by each key that was there, in order
#
# Insert-if-absent over a batch: first-writer-wins claims on many keys in one round trip, and
# the caller learns who holds the others (the sketch functions' exactly-once claims). A
# request is all or nothing on memory (checked before the first insert); a key given twice in
# one request is inserted by its first pair and found by the second.

MULTI_INSERT = codec.data_op(13, "MULTI_INSERT")


class HashBlock(KeyedBlock):
    """One slot-range partition of a hash table."""

    kind = "hash_table"
    writes = KeyedBlock.writes | {MULTI_INSERT}

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.ops[MULTI_INSERT] = self.multi_insert

    def multi_insert(self, f: list[bytes]) -> list[bytes]:
        if len(f) % 2 != 1:
            raise errors.StateProtocolError("multi_insert takes key/value pairs")
        keys, values = f[1::2], f[2::2]
        data = self.data
        new: dict[bytes, bytes] = {}
        for key, value in zip(keys, values, strict=True):
            self._route(key)
            if key not in data and key not in new:
                new[key] = value
        grow = sum(self._entry(len(k), len(v)) for k, v in new.items())
        if grow:
            self._need_room(grow)
        # The values the reply carries back are what the block already holds: bounded by it.
        flags = bytearray(len(keys))
        held: list[bytes] = []
        for i, key in enumerate(keys):
            if key in new:  # its first pair: a repeat of the key finds it held
                data[key] = new.pop(key)
                flags[i] = 1
            else:
                held.append(data[key])
        self._charge(grow)
        self._after_write()
        if "put" in self.watch:
            for key, inserted in zip(keys, flags, strict=True):
                if inserted:
                    self.host.notify(self, "put", key)
        return [bytes(flags), *held]


class HashTable(KeyValueHandle):
    """Keys and values are bytes. put inserts (DuplicateKeyError if present), upsert overwrites,
    update needs the key (KeyNotFoundError), multi_put upserts a batch, multi_insert inserts
    the absent keys of a batch and answers who holds the rest."""

    kind = "hash_table"

    def multi_insert(self, items: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]) -> list[bytes | None]:
        """Insert each pair whose key is absent. Returns, in order, None where this call
        inserted the pair, else the value the key held. Safe to send again after a broken
        connection: a pair this call inserted comes back holding its own value."""
        pairs = as_pairs(items)
        out: list[bytes | None] = [None] * len(pairs)

        def done(ix: list[int], r: list[bytes]) -> None:
            held = iter(r[1:])
            for n, i in enumerate(ix):
                if not r[0][n]:
                    out[i] = next(held)

        self._multi_pairs(MULTI_INSERT, pairs, done)
        return out


KIND = register(
    Kind(
        name="hash_table",
        dump_code=1,  # records alternate key, value
        layout=Ranges(NUM_SLOTS, slot_of),
        block=HashBlock,
        handle=HashTable,
        notify_ops=frozenset({"put", "upsert", "update", "remove"}),
    )
)
