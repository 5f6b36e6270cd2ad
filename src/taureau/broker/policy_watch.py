"""Policy changes made at another broker reach this broker's loaded topics (cluster mode).

A namespace or topic policy change is stored by the broker that received the call, which
pushes it into its own loaded topics at once. Every other broker of the store watches the
policy records of what it has loaded: `/admin/policies/<tenant>/<ns>` for each namespace with a
loaded topic and `/admin/topic-policies/...` for each loaded topic (a partitioned topic's
record once for its partitions). A fired watch re-applies that record to the loaded topics, as
the receiving broker does; ZooKeeper delivers it within a round trip.

The watched set follows the loaded topics every RECONCILE_S. A topic loaded just before its
watch is armed could miss a change made in between, so arming a watch re-applies its record
once. At most MAX_TOPIC_WATCHES topic records are watched; topics past that take their own
policies when they load again (namespace records are always watched).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from taureau.broker.resources import POLICIES, topic_policies_path
from taureau.common.errors import TaureauError
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.store import MetadataStore, WatchCallback, WatchEvent

log = logging.getLogger(__name__)

RECONCILE_S = 1.0
MAX_TOPIC_WATCHES = 10_000

Key = NamespaceName | TopicName  # a namespace's record, or a (partitioned) topic's


class PolicyWatcher:
    """Owns the watches on the policy records of what this broker has loaded, and the one
    pending re-apply per record."""

    def __init__(self, store: MetadataStore, loaded: Callable[[], Iterable[TopicName]],
                 apply_namespace: Callable[[NamespaceName], Awaitable[None]],
                 apply_topic: Callable[[TopicName], Awaitable[None]]) -> None:
        self.store = store
        self._loaded = loaded
        self._apply_namespace = apply_namespace
        self._apply_topic = apply_topic
        self._watches: dict[Key, Callable[[], None]] = {}
        self._pending: dict[Key, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self.applied = 0  # re-applies done (stats, tests)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for cancel in self._watches.values():
            cancel()
        self._watches.clear()
        for task in list(self._pending.values()):
            task.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_S)
            self.reconcile()

    def reconcile(self) -> None:
        """Watch the records of what is loaded now; drop the watches of what is not."""
        wanted: set[Key] = set()
        topics = 0
        for name in self._loaded():
            wanted.add(name.namespace_name)
            base = replace(name, partition=-1) if name.partition >= 0 else name  # its topic's record
            if base not in wanted and topics < MAX_TOPIC_WATCHES:
                wanted.add(base)
                topics += 1
        for key in [k for k in self._watches if k not in wanted]:
            self._watches.pop(key)()
        for key in wanted - self._watches.keys():
            self._watches[key] = self.store.watch(_path(key), self._callback(key))
            self._schedule(key)  # a change made before the watch was armed is not missed

    def _callback(self, key: Key) -> WatchCallback:
        def fired(event: WatchEvent, _path: str) -> None:
            if event is not WatchEvent.SESSION_EXPIRED:
                self._schedule(key)

        return fired

    def _schedule(self, key: Key) -> None:
        if key in self._pending:
            return  # the re-apply not yet begun reads the latest record anyway
        self._pending[key] = asyncio.get_running_loop().create_task(self._reapply(key))

    async def _reapply(self, key: Key) -> None:
        self._pending.pop(key, None)  # from here on a new change schedules another re-apply
        try:
            if isinstance(key, NamespaceName):
                await self._apply_namespace(key)
            else:
                await self._apply_topic(key)
            self.applied += 1
        except TaureauError as exc:
            # The namespace was deleted, or the store is away: its next change or load applies.
            log.debug("re-applying the policies of %s failed: %s", key, exc)
        except Exception:
            log.exception("re-applying the policies of %s failed", key)


def _path(key: Key) -> str:
    if isinstance(key, NamespaceName):
        return f"{POLICIES}/{key}"
    return topic_policies_path(key)
