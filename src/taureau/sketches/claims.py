"""Claims: each input record counted in exactly one committed partial, across redeliveries.

The merge protocol (`protocol.py`) puts each partial in exactly one window. What it cannot
see is a record counted twice: an instance commits a window's partial and dies before its
inputs are acknowledged, the broker redelivers them, and another instance counts them again.
Claims close that gap. They live in hash tables of the function's ephemeral space, one per
time bucket, and use two atomic operations: `multi_insert` (insert the absent keys, answer
who holds the others) and `put` (insert one key, DuplicateKeyError if it is there).

Keys (bytes):
- `m/<record>/<g>` -> a commit id: who claimed the record, generation g (0, 1, ...).
- `f/<commit id>` -> COMMITTED or ABORTED: the commit's fate, set once by whoever inserts it
  first. A commit id starts with its bucket, so anyone can find its fate's table.

A commit (one window's records, commit id X):
1. Claim every record: insert `m/<record>/0` = X. Where another commit Y holds it, settle Y's
   fate by inserting `f/Y` = ABORTED: if COMMITTED was there first, the record is counted
   already and is left out of this partial (and acknowledged with the rest); if Y is (now)
   aborted, Y never counts, and X claims generation 1, and so on up the chain.
2. Build the partial from the records claimed and commit it to a window (`protocol.commit`),
   its slot naming X.
3. Insert `f/X` = COMMITTED. If ABORTED is there (a finalizer or a redelivered record's new
   owner settled X first), the slot does not count: take it out and commit again, with a new
   id, from step 1.
The finalizer merges only the slots whose commit is COMMITTED; it settles each slot's fate
the same way, so a commit that stalled between its slot and step 3 is aborted, not merged.

Why exactly once: a record counts only through a COMMITTED commit holding its claim; a fate
never changes once set; and a generation is claimed only after the one below it is ABORTED,
so at most one generation of a record's chain is COMMITTED.

Lifetime: a claim is read from the table of its bucket or the one before, so it guards a
record for at least one bucket after its commit; `bucket_ms` is the window plus its grace
plus a minute, more than a crash takes to be noticed and the window to fire again. Tables
three buckets old are removed whole by the finalizer (`stale_buckets`). A record redelivered
later than that (it was acknowledged and the acknowledgement lost for minutes) counts again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

COMMITTED = b"C"
ABORTED = b"A"
MAX_GENERATIONS = 64  # aborted owners one record can have; more means commits keep failing
REDELIVERY_MARGIN_MS = 60_000  # a crash noticed, the records redelivered and buffered again
TABLE_PREFIX = "sketch-claims-"
KEEP_BUCKETS = 3  # tables from this many buckets back are removed


class ClaimsError(RuntimeError):
    """A record's claim chain is longer than any run of the protocol could make it."""


class ClaimTable(Protocol):
    """The part of `taureau.state`'s HashTable claims use."""

    def put(self, key: bytes, value: bytes) -> None: ...
    def multi_get(self, keys: Sequence[bytes]) -> list[bytes | None]: ...
    def multi_insert(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]: ...


def bucket_ms(window_ms: int, grace_ms: int) -> int:
    return window_ms + grace_ms + REDELIVERY_MARGIN_MS


def table_name(bucket: int) -> str:
    return f"{TABLE_PREFIX}{bucket}"


def bucket_of_table(name: str) -> int | None:
    if not name.startswith(TABLE_PREFIX):
        return None
    try:
        return int(name[len(TABLE_PREFIX):])
    except ValueError:
        return None


def stale_buckets(names: Sequence[str], now_bucket: int) -> list[int]:
    """The buckets among these table names that no claimant reads any more."""
    buckets = [bucket_of_table(n) for n in names]
    return sorted(b for b in buckets if b is not None and b <= now_bucket - KEEP_BUCKETS)


def new_commit_id(bucket: int) -> bytes:
    return b"%d.%s" % (bucket, os.urandom(8).hex().encode())


def bucket_of(commit_id: bytes) -> int:
    return int(commit_id.split(b".", 1)[0])


def record_id(message_id: Any) -> bytes:
    """A record's identity across redeliveries (ledger ids are unique in a cluster)."""
    return b"%d:%d:%d" % (message_id.ledger_id(), message_id.entry_id(), message_id.batch_index())


def claim_key(record: bytes, generation: int) -> bytes:
    return b"m/%s/%d" % (record, generation)


def fate_key(commit_id: bytes) -> bytes:
    return b"f/" + commit_id


@dataclass(slots=True)
class Claimed:
    ours: list[int] = field(default_factory=list)  # positions of the records this commit holds
    counted: list[int] = field(default_factory=list)  # positions already in a committed partial


class Claims:
    """Claim records and settle fates; `table(bucket)` opens (or creates) a bucket's table."""

    def __init__(self, table: Callable[[int], ClaimTable]) -> None:
        self.table = table

    def settle(self, commit_ids: Sequence[bytes]) -> dict[bytes, bytes]:
        """Each commit's fate, aborting those not yet committed."""
        fates: dict[bytes, bytes] = {}
        by_bucket: dict[int, list[bytes]] = {}
        for cid in dict.fromkeys(commit_ids):
            by_bucket.setdefault(bucket_of(cid), []).append(cid)
        for bucket, ids in by_bucket.items():
            held = self.table(bucket).multi_insert([(fate_key(c), ABORTED) for c in ids])
            for cid, fate in zip(ids, held, strict=True):
                fates[cid] = ABORTED if fate is None else fate
        return fates

    def mark_committed(self, commit_id: bytes, now_bucket: int) -> bool:
        """True if this commit counts; False if someone aborted it first. A commit that
        stalled until its bucket's table may have been removed (with an ABORTED a finalizer
        left there) never counts: its records are acknowledged only if this says True."""
        if now_bucket - bucket_of(commit_id) >= KEEP_BUCKETS - 1:
            return False
        held = self.table(bucket_of(commit_id)).multi_insert([(fate_key(commit_id), COMMITTED)])[0]
        return held is None or held == COMMITTED

    def claim(self, commit_id: bytes, records: Sequence[bytes]) -> Claimed:
        """Claim each record for `commit_id` (see the module's step 1)."""
        out = Claimed()
        bucket = bucket_of(commit_id)
        # A record claimed in the bucket before keeps its chain there.
        previous = self.table(bucket - 1).multi_get([claim_key(r, 0) for r in records])
        older = [i for i, v in enumerate(previous) if v is not None]
        newer = [i for i, v in enumerate(previous) if v is None]
        for table_bucket, positions in ((bucket - 1, older), (bucket, newer)):
            if positions:
                self._walk(self.table(table_bucket), commit_id, records, positions, out)
        out.ours.sort()
        out.counted.sort()
        return out

    def _walk(self, table: ClaimTable, commit_id: bytes, records: Sequence[bytes], positions: list[int],
              out: Claimed) -> None:
        generation = dict.fromkeys(positions, 0)
        for _ in range(MAX_GENERATIONS):
            if not generation:
                return
            todo = list(generation)
            held = table.multi_insert([(claim_key(records[i], generation[i]), commit_id) for i in todo])
            holders: dict[bytes, list[int]] = {}
            for i, holder in zip(todo, held, strict=True):
                if holder is None or holder == commit_id:
                    out.ours.append(i)
                    del generation[i]
                else:
                    holders.setdefault(holder, []).append(i)
            for holder, fate in self.settle(list(holders)).items():
                for i in holders[holder]:
                    if fate == COMMITTED:
                        out.counted.append(i)
                        del generation[i]
                    else:
                        generation[i] += 1
        if generation:
            raise ClaimsError(f"a record had {MAX_GENERATIONS} aborted owners")
