"""Re-replication: copy what a lost bookie held onto another, so ledgers regain their copies.

A bookie that is gone (not registered as available) leaves every entry it stored with one
copy fewer. For each segment naming it that may be rewritten, this reads those entries from
the other members of their write sets, writes them to a replacement bookie that is not in
that segment yet, and records the replacement in the ledger metadata (compare-and-set; a
ledger changed meanwhile is left for the next run).

Which segments may be rewritten: every segment of a CLOSED ledger; of an OPEN ledger every
segment but the last (its entries were confirmed before the writer changed ensemble, and
the writer adopts the new bookies when it next writes the metadata). The last segment of an
OPEN ledger is its writer's (an ensemble change on its next add) or its recovery's; a ledger
IN_RECOVERY is its recovery's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from taureau.common.errors import BadVersionError, NoSuchEntryError, NotEnoughBookiesError, StorageError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger.api import LedgerMetadata, LedgerState
from taureau.storage.ledger.reads import BookieClient, read_stored

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024  # about what one copy step reads and writes
FIRST_CHUNK = 16  # entries of the first step, before their size is known
MAX_CHUNK_ENTRIES = 1000


@dataclass(frozen=True, slots=True)
class Copied:
    ledger_id: int
    lost: str
    replacement: str
    entries: int


def rewritable_segments(md: LedgerMetadata) -> int:
    """How many of md's segments, from the first, re-replication may rewrite."""
    if md.state is LedgerState.CLOSED:
        return len(md.ensembles)
    if md.state is LedgerState.OPEN:
        return len(md.ensembles) - 1
    return 0


def lost_bookies(md: LedgerMetadata, available: set[str]) -> set[str]:
    """The bookies not in `available` that a rewritable segment of md names."""
    return {b for _, members in md.ensembles[: rewritable_segments(md)] for b in members if b not in available}


async def rereplicate_ledger(
    store: MetadataStore, bookies: Mapping[str, BookieClient], ledger_id: int, available: list[str]
) -> list[Copied]:
    """Re-replicate one ledger's entries held by bookies not in `available`; what was copied."""
    found = await store.get(fmt.ledger_path(ledger_id))
    if found is None:
        return []
    md, version = fmt.decode_metadata(found[0]), found[1].version
    up = set(available)
    alive = {b: client for b, client in bookies.items() if b in up}  # never wait on a lost one
    done: list[Copied] = []
    for index in range(rewritable_segments(md)):
        first, members = md.ensembles[index]
        end = md.ensembles[index + 1][0] - 1 if index + 1 < len(md.ensembles) else md.last_entry_id
        for lost in [b for b in dict.fromkeys(members) if b not in up]:
            spare = next((b for b in available if b not in members and b in alive), None)
            if spare is None:
                raise NotEnoughBookiesError(f"ledger {ledger_id}: no bookie can replace {lost}")
            count = await _copy(alive, md, lost, spare, first, end)
            members = [spare if b == lost else b for b in members]
            md.ensembles[index] = (first, members)
            done.append(Copied(ledger_id, lost, spare, count))
    if not done:
        return []
    md.ensemble = md.ensembles[-1][1]
    try:
        await store.put(fmt.ledger_path(ledger_id), fmt.encode_metadata(md), version)
    except BadVersionError:
        log.warning("ledger %d changed while it was re-replicated; it is left for the next run", ledger_id)
        return []
    return done


async def _copy(
    bookies: Mapping[str, BookieClient], md: LedgerMetadata, lost: str, spare: str, first: int, end: int
) -> int:
    """Copy entries first..end whose write set names `lost` onto `spare`; how many."""
    members = md.ensembles[_segment_of(md, first)][1]
    if len(members) == md.write_quorum:
        # Every member holds every entry of the segment: ranged reads, batched adds.
        return await _copy_ranges(bookies, md, [b for b in members if b != lost and b in bookies], spare, first, end)
    count = 0
    target = bookies[spare]
    for entry_id in range(first, end + 1):
        if lost not in fmt.write_set(md, entry_id):
            continue  # striped: this entry never was on the lost bookie
        await target.add_entry(md.ledger_id, entry_id, await _read_one(bookies, md, entry_id), recovery_add=True)
        count += 1
    return count


async def _copy_ranges(
    bookies: Mapping[str, BookieClient], md: LedgerMetadata, sources: list[str], spare: str, first: int, end: int
) -> int:
    """Copy first..end in chunks of about CHUNK_BYTES (the first of FIRST_CHUNK entries, then
    sized by the entries seen), so a copy holds one chunk at a time whatever the ledger."""
    target = bookies[spare]
    entry_id, want, copied = first, FIRST_CHUNK, 0
    while entry_id <= end:
        last = min(end, entry_id + want - 1)
        chunk: list[bytes] = []
        for source in sources:
            try:
                chunk = await bookies[source].read_entries(md.ledger_id, entry_id, last)
                break
            except StorageError as exc:
                log.warning("ledger %d: ranged read from %s failed: %s", md.ledger_id, source, exc)
        for missing in range(entry_id + len(chunk), last + 1):  # what a short answer left out
            chunk.append(await _read_one(bookies, md, missing))
        # The spare never saw this ledger, but a recovery add is what re-replication is (and
        # it passes a fence: an OPEN ledger's earlier segments are copied while it is written).
        await target.add_entries(md.ledger_id, entry_id, chunk, recovery_add=True)
        entry_id, copied = last + 1, copied + len(chunk)
        average = max(1, sum(len(c) for c in chunk) // len(chunk))
        want = max(1, min(MAX_CHUNK_ENTRIES, CHUNK_BYTES // average))
    return copied


async def _read_one(bookies: Mapping[str, BookieClient], md: LedgerMetadata, entry_id: int) -> bytes:
    stored, _ = await read_stored(bookies, md, entry_id)
    if stored is None:
        raise NoSuchEntryError(f"entry {md.ledger_id}:{entry_id} is on none of its remaining bookies")
    return stored


def _segment_of(md: LedgerMetadata, entry_id: int) -> int:
    return max(i for i, (start, _) in enumerate(md.ensembles) if start <= entry_id)


async def rereplicate_all(
    store: MetadataStore, bookies: Mapping[str, BookieClient], available: list[str]
) -> tuple[list[Copied], list[str]]:
    """Every ledger under /ledgers: (what was copied, one line per ledger that could not be)."""
    copied: list[Copied] = []
    problems: list[str] = []
    for name in await store.children(fmt.LEDGERS_PATH):
        if not name.isdigit():
            continue
        try:
            copied += await rereplicate_ledger(store, bookies, int(name), available)
        except StorageError as exc:
            problems.append(f"ledger {name}: {exc}")
    return copied, problems
