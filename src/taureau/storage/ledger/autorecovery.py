"""Auto-recovery in a bookie process: a replication worker always, the auditor when elected.

Election: the auditor is whoever holds the ephemeral node /underreplication/auditor (its
value: the holder's id and a token of its process). The others watch it and try again when it goes, which is when its
holder stops or its metadata session expires, so there is one auditor at a time and a new
one soon after the old one is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass

from taureau.common.errors import MetadataConnectionError, MetadataError, NodeExistsError, SessionExpiredError
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
        self._claim = f"{owner} {uuid.uuid4().hex}".encode()  # what this process writes as auditor
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
            while not await self._won():
                await wakeup.wait(min(5.0, self._config.check_interval_s))  # the holder may go
            self.is_auditor = True
            log.info("%s is the auditor", self._owner)
            auditor = Auditor(
                self._store,
                lost_bookie_recovery_delay_s=self._config.lost_bookie_recovery_delay_s,
                check_interval_s=self._config.check_interval_s,
            )
            await auditor.run()  # until cancelled: the node is held for the session's life
        except SessionExpiredError:
            return  # the process stops; its session, and with it the auditor node, is gone
        finally:
            wakeup.close()

    async def _won(self) -> bool:
        try:
            await self._store.put(ur.AUDITOR, self._claim, -1, ephemeral=True)
            return True
        except NodeExistsError:
            # A create whose answer was lost may have made the node: it is ours if it holds
            # this process's claim (the id alone could be a restarted bookie's old session).
            found = await self._store.get(ur.AUDITOR)
            return found is not None and found[0] == self._claim
        except MetadataConnectionError as exc:
            log.warning("auditor election: %s", exc)
            return False

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # failures were logged
        self._tasks = []
        if self.is_auditor:
            self.is_auditor = False
            with contextlib.suppress(MetadataError):
                await self._store.delete(ur.AUDITOR)  # let another take over at once


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and not isinstance(task.exception(), (type(None), SessionExpiredError)):
        log.error("auto-recovery stopped: %r", task.exception())
