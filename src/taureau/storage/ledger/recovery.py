"""Ledger recovery: fence an OPEN ledger on its bookies, recover what reached ack quorum, close it.

Steps (BookKeeper's): mark the metadata IN_RECOVERY; fence every bookie of the ensemble
(each write set must have at least W - A + 1 fenced bookies, so the old writer can no
longer reach an ack quorum anywhere); learn a safe starting point from the LAC the writer
piggybacked on each bookie's last entry; then read forward entry by entry, re-writing each
one to its whole write set (recovery adds pass the fence), until an entry is absent from
W - A + 1 bookies of its write set, which proves it was never acknowledged; finally record
CLOSED at the last recovered entry. A bookie that fails while an entry is re-written is
replaced by a spare from that entry on (an ensemble change, recorded with the CLOSED state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from taureau.common.errors import BadVersionError, NotEnoughBookiesError, StorageError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger.api import LedgerMetadata, LedgerState
from taureau.storage.ledger.reads import BookieClient, read_stored

log = logging.getLogger(__name__)


async def _fence(bookies: Mapping[str, BookieClient], md: LedgerMetadata) -> dict[str, int]:
    """Fence the ensemble; return bookie id -> its last entry id, for the bookies that did."""
    ids = list(dict.fromkeys(md.ensemble))
    results = await asyncio.gather(
        *(bookies[b].fence(md.ledger_id) if b in bookies else _missing(b) for b in ids),
        return_exceptions=True,
    )
    fenced = {b: r for b, r in zip(ids, results, strict=True) if isinstance(r, int)}
    need = md.write_quorum - md.ack_quorum + 1
    start = md.ensembles[-1][0]  # only the last segment is still written to
    for offset in range(len(md.ensemble)):
        members = fmt.write_set(md, start + offset)
        if sum(1 for b in members if b in fenced) < need:
            errors = {b: r for b, r in zip(ids, results, strict=True) if not isinstance(r, int)}
            raise NotEnoughBookiesError(
                f"ledger {md.ledger_id}: could fence only {sorted(fenced)} (need {need} of every write set); "
                f"errors: {errors}"
            )
    return fenced


async def _missing(bookie_id: str) -> int:
    raise StorageError(f"bookie {bookie_id} is not available")


async def piggybacked_lac(
    bookies: Mapping[str, BookieClient], md: LedgerMetadata, fenced: dict[str, int]
) -> int:
    lac = -1
    for bookie_id, last in fenced.items():
        if last > lac:
            try:
                stored = await bookies[bookie_id].read_entry(md.ledger_id, last)
            except StorageError as exc:
                log.warning(
                    "recovery of %d: reading %s's last entry failed: %s", md.ledger_id, bookie_id, exc
                )
                continue
            lac = max(lac, fmt.decode_entry(stored)[0])
    return lac


async def _replicate(
    bookies: Mapping[str, BookieClient],
    md: LedgerMetadata,
    entry_id: int,
    stored: bytes,
    spare: Callable[[set[str]], str | None] | None,
) -> None:
    """Write a recovered entry to its write set; a member that fails is replaced by a spare
    bookie from this entry on (md gains a segment), until ack quorum is reached."""
    members = [b for b in fmt.write_set(md, entry_id) if b in bookies]
    results = await asyncio.gather(
        *(bookies[b].add_entry(md.ledger_id, entry_id, stored, recovery_add=True) for b in members),
        return_exceptions=True,
    )
    acked = sum(1 for r in results if r is None)
    failed = [b for b, r in zip(members, results, strict=True) if r is not None]
    failed += [b for b in fmt.write_set(md, entry_id) if b not in bookies]
    tried = set(md.all_bookies())
    errors = [r for r in results if r is not None]
    while acked < md.ack_quorum and failed and spare is not None:
        replacement = spare(tried)
        if replacement is None or replacement not in bookies:
            break
        tried.add(replacement)
        try:
            await bookies[replacement].add_entry(md.ledger_id, entry_id, stored, recovery_add=True)
        except StorageError as exc:
            errors.append(exc)
            continue
        old = failed.pop()
        md.change_ensemble(entry_id, old, replacement)
        log.warning("recovery of ledger %d: entries from %d go to %s instead of %s",
                    md.ledger_id, entry_id, replacement, old)  # fmt: skip
        acked += 1
    if acked < md.ack_quorum:
        raise NotEnoughBookiesError(
            f"recovery of ledger {md.ledger_id}: entry {entry_id} re-written to {acked} bookies, "
            f"need {md.ack_quorum}: {errors}"
        )


async def recover_ledger(
    store: MetadataStore,
    bookies: Mapping[str, BookieClient],
    md: LedgerMetadata,
    version: int,
    spare: Callable[[set[str]], str | None] | None = None,
) -> LedgerMetadata:
    """Fence, recover and close an OPEN or IN_RECOVERY ledger; return its CLOSED metadata.

    `spare(exclude)` names a bookie to re-replicate to in place of one that fails (None: no
    ensemble change; recovery then needs ack quorum of every write set alive)."""
    path = fmt.ledger_path(md.ledger_id)
    if md.state is LedgerState.OPEN:
        md.state = LedgerState.IN_RECOVERY
        version = (await store.put(path, fmt.encode_metadata(md), version)).version
    fenced = await _fence(bookies, md)
    lac = await piggybacked_lac(bookies, md, fenced)
    length = 0
    if lac >= 0:
        stored, _ = await read_stored(bookies, md, lac)
        if stored is None:
            raise StorageError(
                f"recovery of ledger {md.ledger_id}: confirmed entry {lac} is on none of its bookies"
            )
        length = fmt.decode_entry(stored)[1]
    need_absent = md.write_quorum - md.ack_quorum + 1
    # Whether an entry was acknowledged is decided on the bookies the writer wrote to, never
    # on a replacement this recovery brought in (which has nothing yet).
    written = replace(md, ensemble=list(md.ensemble), ensembles=list(md.ensembles))
    entry_id = lac + 1
    while True:
        stored, absent = await read_stored(bookies, written, entry_id)
        if stored is None:
            if absent >= need_absent:
                break
            raise StorageError(
                f"recovery of ledger {md.ledger_id}: cannot tell whether entry {entry_id} was acknowledged "
                f"({absent} of {md.write_quorum} bookies say absent, the others failed)"
            )
        await _replicate(bookies, md, entry_id, stored, spare)
        length = fmt.decode_entry(stored)[1]
        entry_id += 1
    md.state, md.last_entry_id, md.length = LedgerState.CLOSED, entry_id - 1, length
    try:
        await store.put(path, fmt.encode_metadata(md), version)
    except BadVersionError:
        found = await store.get(path)
        if found is None:
            raise
        other = fmt.decode_metadata(found[0])
        if other.state is not LedgerState.CLOSED:
            raise
        return other  # a concurrent recovery closed it first
    log.info("ledger %d recovered and closed at entry %d", md.ledger_id, md.last_entry_id)
    return md
