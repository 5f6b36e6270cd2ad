"""Auto-recovery in a bookie process: a replication worker always, the auditor when elected.

Election: the auditor is whoever holds the ephemeral node /underreplication/auditor (its
value: the holder's id). The others watch it and try again when it goes, which is when its
holder stops or its metadata session expires, so there is one auditor at a time and a new
one soon after the old one is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from taureau.common.errors import MetadataError, NodeExistsError
from taureau.metadata.store import MetadataStore
from taureau.storage.ledger import underreplication as ur
from taureau.storage.ledger.auditor import Auditor
from taureau.storage.ledger.replication_worker import BookieSource, ReplicationWorker
from taureau.storage.ledger.wakeup import Wakeup

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AutoRecoveryConfig:
    lost_bookie_recovery_delay_s: float = 0.0  # BookKeeper's default too
    check_interval_s: float = 60.0  # the auditor's full check and the worker's poll


class AutoRecovery:
    """>>> recovery = AutoRecovery(store, client.reachable, "10.0.0.1:3181"); recovery.start()"""

    def __init__(
        self, store: MetadataStore, source: BookieSource, owner: str, config: AutoRecoveryConfig | None = None
    ) -> None:
        self._store = store
        self._owner = owner
        self._config = config or AutoRecoveryConfig()
        self.worker = ReplicationWorker(store, source, owner, poll_s=self._config.check_interval_s)
        self.is_auditor = False
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self.worker.run()), asyncio.ensure_future(self._elect())]
        for task in self._tasks:
            task.add_done_callback(_log_failure)

    async def _elect(self) -> None:
        wakeup = Wakeup(self._store, ur.AUDITOR)
        try:
            while True:
                try:
                    await self._store.put(ur.AUDITOR, self._owner.encode(), -1, ephemeral=True)
                except NodeExistsError:
                    await wakeup.wait(min(5.0, self._config.check_interval_s))  # the holder may go
                    continue
                self.is_auditor = True
                log.info("%s is the auditor", self._owner)
                auditor = Auditor(
                    self._store,
                    lost_bookie_recovery_delay_s=self._config.lost_bookie_recovery_delay_s,
                    check_interval_s=self._config.check_interval_s,
                )
                await auditor.run()  # until cancelled: the node is held for the session's life
        finally:
            wakeup.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.is_auditor:
            self.is_auditor = False
            with contextlib.suppress(MetadataError):
                await self._store.delete(ur.AUDITOR)  # let another take over at once


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("auto-recovery stopped: %r", task.exception())
