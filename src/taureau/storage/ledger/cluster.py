"""ClusterLedgerClient: ledgers on `taureau bookie` processes found in the metadata store.

New ensembles, and spares that replace a failed bookie (a writer's ensemble change, a
recovery), are chosen among the bookies registered as available: looked up again for each
new ledger and recovery, and, once looked up, kept current by a watch on the registry, so a
bookie that registers while a ledger is written can replace one that fails. Any bookie a
ledger's metadata names is reached by its id, which is its address, so ledgers written
before a bookie left can still be read from the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from taureau.common.errors import MetadataError
from taureau.metadata.store import MetadataStore, WatchEvent
from taureau.storage.ledger.client import BookieClient, BookKeeperClient
from taureau.storage.ledger.registry import AVAILABLE, available_bookies
from taureau.storage.ledger.remote import RemoteBookie
from taureau.storage.ledger.rereplicate import Copied, rereplicate_all

log = logging.getLogger(__name__)


class ClusterLedgerClient(BookKeeperClient):
    """>>> client = ClusterLedgerClient(store); ledger = await client.create_ledger(2, 2, 2)"""

    def __init__(
        self, metadata: MetadataStore, *, request_timeout_s: float = 30.0,
        add_timeout_s: float | None = None, read_timeout_s: float | None = None,
    ) -> None:
        super().__init__(metadata, {})
        self._request_timeout_s = request_timeout_s
        self._add_timeout_s = add_timeout_s  # None: the request timeout
        self._read_timeout_s = read_timeout_s
        self._available: list[str] = []
        self._remotes: dict[str, RemoteBookie] = {}
        self._unwatch: Callable[[], None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._stale = False  # the registry changed while a refresh ran: run one more

    async def create_ledger(
        self,
        ensemble_size: int = 1,
        write_quorum: int = 1,
        ack_quorum: int = 1,
        custom: dict[str, str] | None = None,
    ):
        await self._refresh()
        return await super().create_ledger(ensemble_size, write_quorum, ack_quorum, custom)

    async def open_ledger(self, ledger_id: int, recovery: bool = True):
        if recovery:
            await self._refresh()  # a recovery may need a spare bookie
        return await super().open_ledger(ledger_id, recovery)

    async def available_bookies(self) -> int:
        await self._refresh()  # the registrations of now, not of the last ledger created
        return await super().available_bookies()

    async def _refresh(self) -> None:
        if self._unwatch is None and not self._closed:
            self._unwatch = self._store.watch(AVAILABLE, self._registry_changed)
        self._available = await available_bookies(self._store)
        self._reach(self._available)

    def _registry_changed(self, event: WatchEvent, path: str) -> None:
        if self._refreshing is not None and not self._refreshing.done():
            self._stale = True  # one more look when this one is done, never a pile of them
            return
        self._refreshing = asyncio.ensure_future(self._refresh_in_background())

    async def _refresh_in_background(self) -> None:
        self._stale = True
        while self._stale and not self._closed:
            self._stale = False
            try:
                await self._refresh()
            except MetadataError as exc:
                log.warning("bookie registry not re-read (the next change or ledger tries again): %s", exc)
                return

    async def rereplicate(self) -> tuple[list[Copied], list[str]]:
        """Copy what bookies no longer registered held onto the others (closed ledgers)."""
        await self._refresh()
        return await rereplicate_all(self._store, self.bookies, sorted(self._available))

    async def reachable(self) -> tuple[Mapping[str, BookieClient], list[str]]:
        """(every bookie this client can talk to, the ids registered now): a replication
        worker's view."""
        await self._refresh()
        return self.bookies, sorted(self._available)

    def _candidates(self) -> list[str]:
        return sorted(self._available)

    def _reach(self, bookie_ids: list[str]) -> None:
        for bookie_id in bookie_ids:
            if bookie_id not in self._remotes:
                remote = RemoteBookie(
                    bookie_id, request_timeout_s=self._request_timeout_s,
                    add_timeout_s=self._add_timeout_s, read_timeout_s=self._read_timeout_s,
                )
                self._remotes[bookie_id] = remote
                self.bookies[bookie_id] = remote

    async def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._refreshing is not None:
            self._refreshing.cancel()
            await asyncio.gather(self._refreshing, return_exceptions=True)
        try:
            await super().close()
        finally:
            for remote in self._remotes.values():
                await remote.close()
