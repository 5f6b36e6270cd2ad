"""The seam between the broker and topic ownership: who serves a topic, and giving up bundles.

The broker asks `owner_of` to answer lookups and `check_serves` before it loads a topic; the
admin API asks the rest. `SingleBroker` is the answer of a broker alone (standalone with an
embedded store): it serves everything. `ClusterOwnership` (cluster.py) is that of several
brokers on one ZooKeeper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from taureau.broker.ownership.bundles import DEFAULT_BUNDLES, Bundle, bundle_for, bundles_of
from taureau.broker.ownership.registry import BrokerLoad, BrokerRecord, BrokerUrls
from taureau.common.names import NamespaceName, TopicName

# Closes this broker's loaded topics that the predicate picks, telling their clients to go
# (they look the topic up again); the number closed.
TopicUnloader = Callable[[Callable[[TopicName], bool]], Awaitable[int]]


class Ownership(Protocol):
    async def owner_of(self, name: TopicName, authoritative: bool = False) -> BrokerUrls | None:
        """The broker that serves `name` (placing its bundle if nobody does); None: this one."""

    async def check_serves(self, name: TopicName) -> None:
        """Raise ServiceNotReadyError unless this broker serves `name` (or just took its bundle)."""

    async def bundles(self, ns: NamespaceName) -> list[Bundle]: ...

    async def bundle_owner(self, bundle: Bundle) -> tuple[BrokerUrls | None, bool]:
        """(owner, owned): (None, True) for this broker, (urls, True) for another one,
        (None, False) when nobody owns it."""

    async def unload(self, bundle: Bundle) -> int:
        """Give up `bundle` if this broker owns it: its topics closed, clients sent away; the
        number of topics closed."""

    async def brokers(self) -> list[BrokerRecord]:
        """The live brokers, with the load each last reported."""

    def owned(self) -> list[Bundle] | None:
        """The bundles this broker serves; None: every bundle (a broker alone)."""


class SingleBroker:
    """One broker serves every bundle; an unload closes the bundle's topics, which load again
    here on their next use."""

    def __init__(self, me: Callable[[], BrokerUrls], unload_topics: TopicUnloader) -> None:
        self._me = me
        self._unload_topics = unload_topics

    async def owner_of(self, name: TopicName, authoritative: bool = False) -> BrokerUrls | None:
        return None

    async def check_serves(self, name: TopicName) -> None:
        return None

    async def bundles(self, ns: NamespaceName) -> list[Bundle]:
        return bundles_of(ns, DEFAULT_BUNDLES)

    async def bundle_owner(self, bundle: Bundle) -> tuple[BrokerUrls | None, bool]:
        return None, True

    async def unload(self, bundle: Bundle) -> int:
        count = len(await self.bundles(bundle.namespace))
        return await self._unload_topics(lambda name: in_bundle(name, bundle, count))

    async def brokers(self) -> list[BrokerRecord]:
        return [BrokerRecord(self._me(), BrokerLoad())]

    def owned(self) -> list[Bundle] | None:
        return None


def in_bundle(name: TopicName, bundle: Bundle, count: int) -> bool:
    return name.namespace_name == bundle.namespace and bundle_for(name, count) == bundle
