"""The replication worker (BookKeeper's ReplicationWorker): re-replicate marked ledgers.

Theory of operation: every bookie runs one. It wakes when the set of marks or of registered
bookies changes (and every `poll_s` regardless), and for each marked ledger whose lock it
can take (an ephemeral node: one worker per ledger at a time, freed if the worker dies)
copies what the lost bookies held onto registered ones (rereplicate.py), then removes the
mark when no rewritable segment names a bookie that is not registered, unless the auditor
renewed the mark meanwhile. A ledger that cannot be fixed now (no bookie to copy onto, its
metadata changed under the copy) keeps its mark for the next wake.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from taureau.common.errors import BadVersionError, MetadataConnectionError, SessionExpiredError, StorageError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger import underreplication as ur
from taureau.storage.ledger.reads import BookieClient
from taureau.storage.ledger.registry import AVAILABLE
from taureau.storage.ledger.rereplicate import Copied, lost_bookies, rereplicate_ledger
from taureau.storage.ledger.wakeup import Wakeup

log = logging.getLogger(__name__)

# The bookies to talk to and the ids of those registered now (ClusterLedgerClient.reachable).
BookieSource = Callable[[], Awaitable[tuple[Mapping[str, BookieClient], list[str]]]]


class ReplicationWorker:
    def __init__(self, store: MetadataStore, source: BookieSource, owner: str, *, poll_s: float = 60.0) -> None:
        self._store = store
        self._source = source
        self._owner = owner  # written in the locks it takes, for whoever looks
        self._poll_s = poll_s

    async def run(self) -> None:
        wakeup = Wakeup(self._store, ur.MARKS, AVAILABLE)
        try:
            while True:
                try:
                    await self.work_once()
                except SessionExpiredError:
                    return  # the process stops
                except MetadataConnectionError as exc:
                    log.warning("replication pass failed: %s", exc)
                await wakeup.wait(self._poll_s)
        finally:
            wakeup.close()

    async def work_once(self) -> list[Copied]:
        """One pass over the marks; what was copied."""
        copied: list[Copied] = []
        for ledger_id in await ur.marked(self._store):
            if not await ur.lock(self._store, ledger_id, self._owner):
                continue  # another worker has it
            try:
                copied += await self._replicate(ledger_id)
            except (StorageError, BadVersionError, MetadataConnectionError) as exc:
                log.warning("ledger %d stays under-replicated for now: %s", ledger_id, exc)
            finally:
                await ur.unlock(self._store, ledger_id)
        return copied

    async def _replicate(self, ledger_id: int) -> list[Copied]:
        version = await ur.mark_version(self._store, ledger_id)
        if version is None:
            return []  # done by another worker before this one took the lock
        bookies, available = await self._source()
        copied = await rereplicate_ledger(self._store, bookies, ledger_id, available)
        for c in copied:
            log.warning("ledger %d: %d entries of lost bookie %s copied to %s",
                        c.ledger_id, c.entries, c.lost, c.replacement)  # fmt: skip
        found = await self._store.get(fmt.ledger_path(ledger_id))
        if found is None or not lost_bookies(fmt.decode_metadata(found[0]), set(available)):
            await ur.unmark(self._store, ledger_id, version)  # deleted, or whole again
        return copied
