"""Hash table: bytes keys to bytes values, partitioned by CRC16 slot (as Redis Cluster)."""

from __future__ import annotations

from taureau.state.blocks import NUM_SLOTS, KeyedBlock, slot_of
from taureau.state.handles import KeyValueHandle
from taureau.state.kinds import Kind, register
from taureau.state.layouts import Ranges

# Semantics are Jiffy's: put inserts and raises DuplicateKeyError if the key is there, upsert
# overwrites, update needs the key, remove/get raise KeyNotFoundError; multi_put upserts a
# batch, multi_get answers None for a missing key (as MGET). Every op is the keyed block's.


class HashBlock(KeyedBlock):
    """One slot-range partition of a hash table."""

    kind = "hash_table"


class HashTable(KeyValueHandle):
    """Keys and values are bytes. put inserts (DuplicateKeyError if present), upsert overwrites,
    update needs the key (KeyNotFoundError), multi_put upserts a batch."""

    kind = "hash_table"


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
