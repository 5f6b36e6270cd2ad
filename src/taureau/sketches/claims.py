"""Claims: each input record counted in exactly one committed partial, across redeliveries.

The merge protocol (`protocol.py`) puts each partial in exactly one window. What it cannot
see is a record counted twice: an instance commits a window's partial and dies before its
inputs are acknowledged, the broker redelivers them, and another instance counts them again.
Claims close that gap. They live in hash tables of the function's ephemeral space, one per
time bucket, and use one atomic operation, `multi_insert` (insert each absent key, answer
who holds the others).

A record is a message: an entry of a ledger and, in a batch, its index. Claims are per entry,
each naming the batch indexes it covers, so a batch of a thousand messages costs one claim.
Keys (bytes):
- `m/<ledger>:<entry>/<g>` -> `<commit id>|<indexes>`: generation g (0, 1, ...) of the entry's
  chain of claims, the commit that made it and the indexes it covers (`lo-hi` ranges).
- `f/<commit id>` -> COMMITTED or ABORTED: the commit's fate, set once by whoever inserts it
  first. A commit id starts with its bucket, so anyone can find its fate's table.

A commit (one window's records, commit id X):
1. Claim every entry: insert `m/<entry>/0` = X and the indexes it wants. Where another commit
   Y holds a generation, settle Y's fate by inserting `f/Y` = ABORTED: if COMMITTED was there
   first, the indexes Y covers are counted already and are left out of this partial (and
   acknowledged with the rest); if Y is (now) aborted, it never counts. Then try generation
   g + 1 with the indexes still wanted, until an insert succeeds or none are left.
2. Build the partial from the records claimed and commit it to a window (`protocol.commit`),
   its slot naming X.
3. Insert `f/X` = COMMITTED. If ABORTED is there (a finalizer or a redelivered record's new
   owner settled X first), the slot does not count: commit again, with a new id, from step 1.
The finalizer merges only the slots whose commit is COMMITTED; it settles each slot's fate
the same way, so a commit that stalled between its slot and step 3 is aborted, not merged.

Why exactly once: a record counts only through a COMMITTED commit whose claim covers it; a
fate never changes once set; and a claim is inserted at generation g only after every lower
generation covering one of its indexes was settled: COMMITTED ones' indexes are left out, the
others are ABORTED. So of the claims covering an index, at most one is COMMITTED.

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
MAX_GENERATIONS = 64  # claims one entry's chain can have; more means commits keep failing
REDELIVERY_MARGIN_MS = 60_000  # a crash noticed, the records redelivered and buffered again
TABLE_PREFIX = "sketch-claims-"
KEEP_BUCKETS = 3  # tables from this many buckets back are removed


class ClaimsError(RuntimeError):
    """An entry's claim chain is longer than any run of the protocol could make it."""


class ClaimTable(Protocol):
    """The part of `taureau.state`'s HashTable claims use."""

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


def record_id(message_id: Any) -> tuple[bytes, int]:
    """A record's identity across redeliveries: its entry (ledger ids are unique in a
    cluster) and its index in the entry's batch (0 when the entry is one message)."""
    return b"%d:%d" % (message_id.ledger_id(), message_id.entry_id()), max(message_id.batch_index(), 0)


def claim_key(entry: bytes, generation: int) -> bytes:
    return b"m/%s/%d" % (entry, generation)


def fate_key(commit_id: bytes) -> bytes:
    return b"f/" + commit_id


def encode_indexes(indexes: set[int]) -> bytes:
    """Sorted indexes as `lo-hi` ranges (hi exclusive), comma-separated: a whole batch is one."""
    ordered = sorted(indexes)
    runs: list[bytes] = []
    lo = prev = ordered[0]
    for i in ordered[1:]:
        if i != prev + 1:
            runs.append(b"%d-%d" % (lo, prev + 1))
            lo = i
        prev = i
    runs.append(b"%d-%d" % (lo, prev + 1))
    return b",".join(runs)


def decode_indexes(data: bytes) -> set[int]:
    out: set[int] = set()
    for run in data.split(b","):
        lo, _, hi = run.partition(b"-")
        out.update(range(int(lo), int(hi)))
    return out


def claim_value(commit_id: bytes, indexes: set[int]) -> bytes:
    return commit_id + b"|" + encode_indexes(indexes)


def parse_claim(value: bytes) -> tuple[bytes, set[int]]:
    commit_id, _, indexes = value.partition(b"|")
    return commit_id, decode_indexes(indexes)


@dataclass(slots=True)
class Claimed:
    ours: list[int] = field(default_factory=list)  # positions of the records this commit holds
    counted: list[int] = field(default_factory=list)  # positions already counted (or repeated)


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

    def claim(self, commit_id: bytes, records: Sequence[tuple[bytes, int]]) -> Claimed:
        """Claim each record (entry, batch index) for `commit_id` (the module's step 1)."""
        out = Claimed()
        wanted: dict[bytes, dict[int, int]] = {}  # entry -> index -> position
        for position, (entry, index) in enumerate(records):
            indexes = wanted.setdefault(entry, {})
            if index in indexes:
                out.counted.append(position)  # the same message twice in one window
            else:
                indexes[index] = position
        bucket = bucket_of(commit_id)
        entries = list(wanted)
        # An entry claimed in the bucket before keeps its chain there.
        previous = self.table(bucket - 1).multi_get([claim_key(e, 0) for e in entries])
        older = [e for e, v in zip(entries, previous, strict=True) if v is not None]
        newer = [e for e, v in zip(entries, previous, strict=True) if v is None]
        for table_bucket, chains in ((bucket - 1, older), (bucket, newer)):
            if chains:
                self._walk(self.table(table_bucket), commit_id, {e: wanted[e] for e in chains}, out)
        out.ours.sort()
        out.counted.sort()
        return out

    def _walk(self, table: ClaimTable, commit_id: bytes, wanted: dict[bytes, dict[int, int]],
              out: Claimed) -> None:
        generation = dict.fromkeys(wanted, 0)
        for _ in range(MAX_GENERATIONS):
            if not generation:
                return
            todo = list(generation)
            held = table.multi_insert([(claim_key(e, generation[e]), claim_value(commit_id, set(wanted[e])))
                                       for e in todo])
            holders: dict[bytes, list[tuple[bytes, set[int]]]] = {}
            for entry, value in zip(todo, held, strict=True):
                holder, covered = parse_claim(value) if value is not None else (commit_id, set(wanted[entry]))
                if holder == commit_id:  # inserted now, or by this commit before a broken connection
                    out.ours.extend(wanted[entry].values())
                    del generation[entry]
                else:
                    holders.setdefault(holder, []).append((entry, covered))
            for holder, fate in self.settle(list(holders)).items():
                for entry, covered in holders[holder]:
                    indexes = wanted[entry]
                    if fate == COMMITTED:
                        for index in covered & indexes.keys():
                            out.counted.append(indexes.pop(index))
                    if indexes:
                        generation[entry] += 1
                    else:
                        del generation[entry]
        if generation:
            raise ClaimsError(f"an entry's claims had {MAX_GENERATIONS} generations")
