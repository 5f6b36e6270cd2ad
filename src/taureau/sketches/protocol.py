"""The merge protocol: partial sketches -> one merged sketch per window, exactly once.

Parallel instances of a sketch function each hold a partial sketch per window (processing
time windows end at multiples of the window length on every instance, so a window is named
by its end, in ms). They meet in a hash table of the function's ephemeral space, whose only
atomic operation used here is `put` (insert; DuplicateKeyError if the key is there).

Keys: `<end>/<n>` for n = 0, 1, 2, ... ("slots") and `gc` (the end of the newest window
whose slots were removed).

- Commit (an instance whose window fired): `put` its partial in the first free slot n (trying
  0, 1, ... until an insert succeeds, so the slots of a window are always filled without a
  gap). Then read slots 0..n-1 and `gc`: if one of them is the SEAL marker, or gc >= end, the
  window was closed before this slot was taken: remove the slot and commit to the next
  window instead. Otherwise the partial is in.
- Seal (the finalizer, once end + grace has passed): `put` SEAL in the first free slot s. The
  window is then exactly slots 0..s-1: a commit that took a slot before s is merged; one
  that took a slot after s sees the SEAL and moves on. Whoever seals first wins; a second
  sealer finds the SEAL while scanning and uses the same s.
- Finalize: merge slots 0..s-1 (in slot order), store the result in the function's durable
  state, publish it, then set `gc` and remove the slots.

A slot names the commit that put it there (`claims.py`): the finalizer merges a slot only if
that commit's fate is COMMITTED, which is what makes a redelivered record count once.

Why this is exactly once per window: every partial lands in exactly one window's slots
before that window's SEAL (or moves on until it does), a SEAL position never changes, and
publication is deduplicated by the broker (a fixed producer name, the window end as the
sequence id), so a finalizer that crashes and is replaced publishes nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from taureau.common.errors import DuplicateKeyError, KeyNotFoundError

SEAL = b"SEAL"
PARTIAL = b"P"  # prefix of a partial sketch's bytes in its slot (no commit id)
NAMED = b"N"  # prefix of a slot naming its commit: NAMED + commit id + b"\n" + the partial
GC_KEY = b"gc"
MAX_SLOTS = 4096  # commits to one window at most (instances x restarts); more is a bug
MAX_FORWARD = 10_000  # windows a late partial may move forward at most


class Table(Protocol):
    """The part of `taureau.state`'s HashTable the protocol uses."""

    def put(self, key: bytes, value: bytes) -> None: ...
    def upsert(self, key: bytes, value: bytes) -> None: ...
    def remove(self, key: bytes) -> None: ...
    def multi_get(self, keys: Sequence[bytes]) -> list[bytes | None]: ...


class ProtocolError(RuntimeError):
    """A window holds more slots than any run of the protocol could fill."""


class Partial(NamedTuple):
    commit_id: bytes | None  # None: a slot whose partial always counts
    data: bytes


def encode_slot(partial: bytes, commit_id: bytes | None) -> bytes:
    if commit_id is None:
        return PARTIAL + partial
    if b"\n" in commit_id:
        raise ValueError("a commit id has no newline")
    return NAMED + commit_id + b"\n" + partial


def decode_slot(value: bytes) -> Partial:
    if value.startswith(NAMED):
        commit_id, _, data = value[len(NAMED):].partition(b"\n")
        return Partial(commit_id, data)
    return Partial(None, value[len(PARTIAL):])


def slot_key(end: int, n: int) -> bytes:
    return f"{end}/{n}".encode()


def _take_slot(table: Table, end: int, value: bytes) -> int:
    n = 0
    while n < MAX_SLOTS:
        try:
            table.put(slot_key(end, n), value)
            return n
        except DuplicateKeyError:
            n += 1
    raise ProtocolError(f"window {end} has {MAX_SLOTS} slots taken")


def gc_mark(table: Table) -> int:
    value = table.multi_get([GC_KEY])[0]
    return int(value) if value is not None else -1


def commit(table: Table, end: int, length_ms: int, partial: bytes, commit_id: bytes | None = None) -> int:
    """Put a partial sketch into window `end` (or a later one if `end` is closed); returns
    the end of the window it went into."""
    value = encode_slot(partial, commit_id)
    for _ in range(MAX_FORWARD):
        n = _take_slot(table, end, value)
        before = table.multi_get([slot_key(end, i) for i in range(n)] + [GC_KEY])
        gc = int(before[-1]) if before[-1] is not None else -1
        if gc < end and SEAL not in before[:-1]:
            return end
        try:
            table.remove(slot_key(end, n))
        except KeyNotFoundError:
            pass  # the finalizer removed the window's slots already
        end += length_ms
    raise ProtocolError(f"a partial moved forward {MAX_FORWARD} windows without finding an open one")


def seal(table: Table, end: int) -> list[Partial]:
    """Close window `end`; returns its partial sketches in slot order (the same list for
    every caller, however many seal it)."""
    partials: list[Partial] = []
    n = 0
    while n < MAX_SLOTS:
        value = table.multi_get([slot_key(end, n)])[0]
        if value is None:
            try:
                table.put(slot_key(end, n), SEAL)
                return partials
            except DuplicateKeyError:
                continue  # a commit (or another sealer) took it first: read it again
        if value == SEAL:
            return partials
        partials.append(decode_slot(value))
        n += 1
    raise ProtocolError(f"window {end} has {MAX_SLOTS} slots taken")


def has_commits(table: Table, ends: Sequence[int]) -> list[int]:
    """Which of these windows hold at least one slot (one batched read)."""
    found = table.multi_get([slot_key(e, 0) for e in ends])
    return [e for e, v in zip(ends, found, strict=True) if v is not None]


def collect(table: Table, end: int, slots: int) -> None:
    """After a window is stored and published: mark it collected, then drop its slots (its
    SEAL included). Late commits see `gc` and move on even once the slots are gone."""
    table.upsert(GC_KEY, str(end).encode())
    for n in range(slots + 1):
        try:
            table.remove(slot_key(end, n))
        except KeyNotFoundError:
            pass
