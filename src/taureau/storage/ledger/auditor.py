"""The auditor (BookKeeper's): notice lost bookies and mark the ledgers they leave under-replicated.

Theory of operation: the one elected auditor (autorecovery.py) watches the bookie
registrations. A bookie that was registered and is not any more, or that a ledger names
but is not registered, is lost from the moment the auditor first sees it so. Once it has
been lost for `lost_bookie_recovery_delay_s` (BookKeeper's lostBookieRecoveryDelay: a
bookie restarted within it costs no copying) the auditor reads every ledger's metadata and
marks each one with a rewritable segment naming it (rereplicate.lost_bookies) in the
under-replication tree; replication workers do the copying. A bookie that comes back
within the delay is forgotten. A full check runs when elected (bookies lost while no
auditor ran), and then every `check_interval_s` (BookKeeper's auditorPeriodicCheckInterval)
while a lost bookie is still named by some ledger: it finds segments that became rewritable
later (an OPEN ledger's writer changed ensemble away from a lost bookie).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from taureau.common.errors import (
    CorruptedDataError,
    MetadataConnectionError,
    SessionExpiredError,
    StorageError,
)
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import format as fmt
from taureau.storage.ledger import underreplication as ur
from taureau.storage.ledger.registry import AVAILABLE, available_bookies
from taureau.storage.ledger.rereplicate import lost_bookies
from taureau.storage.ledger.wakeup import Wakeup

log = logging.getLogger(__name__)

_RETRY_S = 5.0  # after a pass failed (ZooKeeper unreachable for a moment)


class Auditor:
    def __init__(
        self,
        store: MetadataStore,
        *,
        lost_bookie_recovery_delay_s: float = 0.0,
        check_interval_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._delay_s = lost_bookie_recovery_delay_s
        self._check_interval_s = check_interval_s
        self._clock = clock
        self._registered: set[str] = set()  # seen registered at the last look
        self.lost_since: dict[str, float] = {}  # bookie id -> when first seen lost (clock)
        self._last_check = float("-inf")
        self.checks = 0  # full checks of every ledger done
        self._checked: set[str] = set()  # lost bookies a check has marked the ledgers of

    async def run(self) -> None:
        """Audit until cancelled (the auditor lost its election, or the process stops)."""
        wakeup = Wakeup(self._store, AVAILABLE)
        try:
            while True:
                try:
                    next_s = await self.audit()
                except SessionExpiredError:
                    return  # the process stops
                except (MetadataConnectionError, StorageError) as exc:
                    log.warning("audit failed, trying again in %gs: %s", _RETRY_S, exc)
                    next_s = _RETRY_S
                await wakeup.wait(next_s)
        finally:
            wakeup.close()

    async def audit(self) -> float:
        """One pass: note departures and returns, mark what is due; seconds until the next."""
        available = set(await available_bookies(self._store))
        now = self._clock()
        for bookie in self._registered - available:
            if bookie not in self.lost_since:
                log.warning("bookie %s left the registry; ledgers on it are re-replicated after %gs",
                            bookie, self._delay_s)  # fmt: skip
                self.lost_since[bookie] = now
        for bookie in available & set(self.lost_since):
            log.info("bookie %s is registered again", bookie)
            del self.lost_since[bookie]
            self._checked.discard(bookie)
        self._registered = available
        due = {b for b, since in self.lost_since.items() if now - since >= self._delay_s}
        # The first check finds bookies lost while no auditor ran; later periodic ones are
        # needed only while a lost bookie is still named somewhere (reading every ledger's
        # metadata is not free).
        periodic = self.checks == 0 or bool(self.lost_since and now - self._last_check >= self._check_interval_s)
        if due - self._checked or periodic:
            await self.check_ledgers(available, due, now)
            self._checked |= due
        waits = [since + self._delay_s - now for b, since in self.lost_since.items() if b not in due]
        if self.lost_since:
            waits.append(self._last_check + self._check_interval_s - now)
        return min(waits, default=self._check_interval_s)

    async def check_ledgers(self, available: set[str], due: set[str], now: float) -> int:
        """Read every ledger's metadata; mark those a due bookie leaves under-replicated.
        Bookies a ledger names that are not registered start their delay now. How many were
        marked."""
        self._last_check = now
        self.checks += 1
        named_lost: set[str] = set()
        count = 0
        for name in await self._store.children(fmt.LEDGERS_PATH):
            if not name.isdigit():
                continue
            found = await self._store.get(fmt.ledger_path(int(name)))
            if found is None:
                continue  # deleted since it was listed
            try:
                md = fmt.decode_metadata(found[0])
            except CorruptedDataError as exc:
                log.warning("auditor: ledger %s skipped: %s", name, exc)
                continue
            missing = {b for b in md.all_bookies() if b not in available}
            named_lost |= missing
            for bookie in missing:
                self.lost_since.setdefault(bookie, now)
            lost = lost_bookies(md, available) & due
            if lost and await ur.mark(self._store, md.ledger_id, lost):
                log.warning("ledger %d is under-replicated: lost %s", md.ledger_id, sorted(lost))
                count += 1
        # A lost bookie no ledger names any more needs nothing: forget it (bounds the map).
        for bookie in set(self.lost_since) - named_lost:
            del self.lost_since[bookie]
            self._checked.discard(bookie)
        return count
