"""Under-replicated ledgers as nodes in the metadata store (BookKeeper's under-replication manager).

    /underreplication/ledgers/<ledger id>   persistent: {"lost": [bookie ids], "marked_ms": ...}
    /underreplication/locks/<ledger id>     ephemeral: the replication worker copying it now
    /underreplication/auditor               ephemeral: the one elected auditor (its bookie id)

The auditor marks; a replication worker takes a mark's lock, copies, and removes the mark
(compare-and-set: a mark the auditor renewed meanwhile stays for another pass). Locks are
ephemeral, so a worker that dies mid-copy frees its ledger for the others. The tree is
outside /ledgers, whose children are ledger ids only.
"""

from __future__ import annotations

import json
import logging
import time

from taureau.common.errors import BadVersionError, NodeExistsError, NotFoundError
from taureau.metadata.store import MetadataStore

log = logging.getLogger(__name__)

ROOT = "/underreplication"
MARKS = f"{ROOT}/ledgers"
LOCKS = f"{ROOT}/locks"
AUDITOR = f"{ROOT}/auditor"

_CAS_RETRIES = 10


def mark_path(ledger_id: int) -> str:
    return f"{MARKS}/{ledger_id}"


async def mark(store: MetadataStore, ledger_id: int, lost: set[str]) -> bool:
    """Mark `ledger_id` under-replicated by `lost`; True if the mark is new or grew."""
    for _ in range(_CAS_RETRIES):
        found = await store.get(mark_path(ledger_id))
        known = set(_lost_of(found[0])) if found else set()
        if found is not None and lost <= known:
            return False
        body = json.dumps({"lost": sorted(known | lost), "marked_ms": int(time.time() * 1000)}).encode()
        try:
            await store.put(mark_path(ledger_id), body, found[1].version if found else -1)
            return True
        except (BadVersionError, NodeExistsError, NotFoundError):
            continue  # a worker removed it or another auditor pass wrote it: look again
    log.warning("could not mark ledger %d under-replicated: its mark kept changing", ledger_id)
    return False


def _lost_of(raw: bytes) -> list[str]:
    try:
        doc = json.loads(raw)
        return [str(b) for b in doc["lost"]]
    except (ValueError, KeyError, TypeError):
        return []  # unreadable: treated as naming no bookie, so the next mark rewrites it


async def marked(store: MetadataStore) -> list[int]:
    """The marked ledger ids (names that are not ids are skipped, with a warning)."""
    ids = []
    for name in await store.children(MARKS):
        if name.isdigit():
            ids.append(int(name))
        else:
            log.warning("ignoring %s/%s: not a ledger id", MARKS, name)
    return ids


async def lock(store: MetadataStore, ledger_id: int, owner: str) -> bool:
    """Take the ledger's replication lock for this session; False if another worker has it."""
    try:
        await store.put(f"{LOCKS}/{ledger_id}", owner.encode(), -1, ephemeral=True)
        return True
    except NodeExistsError:
        return False


async def unlock(store: MetadataStore, ledger_id: int) -> None:
    try:
        await store.delete(f"{LOCKS}/{ledger_id}")
    except NotFoundError:
        pass


async def mark_version(store: MetadataStore, ledger_id: int) -> int | None:
    found = await store.get(mark_path(ledger_id))
    return None if found is None else found[1].version


async def unmark(store: MetadataStore, ledger_id: int, version: int) -> bool:
    """Remove the mark if it is still at `version` (one written later stays)."""
    try:
        await store.delete(mark_path(ledger_id), version)
        return True
    except NotFoundError:
        return True
    except BadVersionError:
        return False
