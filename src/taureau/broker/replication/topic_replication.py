"""The replicators of one persistent topic: one per remote cluster of its namespace's
replication clusters, started and stopped as that list changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from taureau.broker.replication.clusters import ClusterRegistry
from taureau.broker.replication.remote import RemoteError
from taureau.broker.replication.replicator import PREFIX, Replicator, cursor_name, is_replication_cursor
from taureau.storage.managed_ledger.api import InitialPosition, ManagedLedger

log = logging.getLogger(__name__)


class TopicReplication:
    def __init__(self, topic: str, ledger: ManagedLedger, clusters: ClusterRegistry) -> None:
        self.topic = topic
        self.ledger = ledger
        self.clusters = clusters
        self.replicators: dict[str, Replicator] = {}  # remote cluster -> its replicator; owned here
        # Policy pushes and the topic's close may overlap (each awaits cursor work): one at a
        # time, or two pushes would both start a replicator for one remote.
        self._changing = asyncio.Lock()
        self._closed = False

    async def apply(self, replication_clusters: list[str]) -> None:
        """Run a replicator to each cluster of the list but the local one; stop (and drop the
        cursor of) each one no longer listed, as Pulsar does when a cluster is removed."""
        async with self._changing:
            if not self._closed:
                await self._apply({c for c in replication_clusters if c != self.clusters.local})

    async def _apply(self, wanted: set[str]) -> None:
        for remote in sorted(set(self.replicators) - wanted):
            await self.replicators.pop(remote).stop()
            await self.ledger.delete_cursor(cursor_name(remote))
            log.info("replication of %s to %s stopped", self.topic, remote)
        # A cursor left by a replicator whose cluster was removed while the topic was not
        # loaded here: it would hold the topic's ledgers forever.
        for name in [n for n in self.ledger.cursors if is_replication_cursor(n)]:
            if name.removeprefix(PREFIX) not in wanted:
                await self.ledger.delete_cursor(name)
        for remote in sorted(wanted - set(self.replicators)):
            # Created at the end of the topic, as Pulsar's: what was published before
            # replication was turned on stays local.
            cursor = await self.ledger.open_cursor(cursor_name(remote), InitialPosition.LATEST)
            replicator = Replicator(self.topic, self.clusters.local, remote, cursor, self._url_of(remote))
            self.replicators[remote] = replicator
            replicator.start()
            log.info("replication of %s to %s started", self.topic, remote)

    def _url_of(self, remote: str) -> Callable[[], Awaitable[str]]:
        async def url() -> str:
            data = await self.clusters.find(remote)
            if data is None:
                raise RemoteError(f"cluster {remote} is not registered (taureau admin clusters create)")
            if not data.brokerServiceUrl:
                raise RemoteError(f"cluster {remote} has no brokerServiceUrl")
            return data.brokerServiceUrl

        return url

    @property
    def backlog(self) -> int:
        return sum(r.backlog for r in self.replicators.values())

    def stats(self) -> dict[str, dict]:
        return {remote: r.stats() for remote, r in sorted(self.replicators.items())}

    async def close(self) -> None:
        """Stop the replicators; their cursors stay, with what the remotes have not stored."""
        async with self._changing:
            self._closed = True
            for replicator in self.replicators.values():
                await replicator.stop()
            self.replicators.clear()
