"""The seam between the broker and topic ownership: who serves a topic, and giving up bundles.

The broker asks `owner_of` to answer lookups and `check_serves` before it loads a topic; the
admin API asks the rest. `SingleBroker` is the answer of a broker alone (standalone with an
embedded store): it serves everything. `ClusterOwnership` (cluster.py) is that of several
brokers on one ZooKeeper.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from taureau.broker.ownership.bundles import Bundle, split_edges, topic_hash
from taureau.broker.ownership.layout import BundleLayouts
from taureau.broker.ownership.registry import BrokerLoad, BrokerRecord, BrokerUrls, BundleStats
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

    async def unload(self, bundle: Bundle, destination: str | None = None) -> int:
        """Give up `bundle` if this broker owns it: its topics closed, clients sent away; the
        number of topics closed. `destination`: the broker id its next placement picks."""

    async def split(self, bundle: Bundle, limit: int) -> list[Bundle]:
        """Cut `bundle` (served here) in two, its topics closed as by an unload; the halves.
        ResourceNotFoundError for a range that is not a bundle, PreconditionFailedError past
        `limit` bundles or for a bundle too small; nothing changes then."""

    async def bundle_stats(self) -> dict[Bundle, BundleStats]:
        """The message rate and loaded topics of each bundle this broker serves."""

    async def brokers(self) -> list[BrokerRecord]:
        """The live brokers, with the load each last reported."""

    def owned(self) -> list[Bundle] | None:
        """The bundles this broker serves; None: every bundle (a broker alone)."""


# (topic, messages per second in and out) of each topic this broker has loaded.
LoadSource = Callable[[], list[tuple[TopicName, float]]]


class SingleBroker:
    """One broker serves every bundle; an unload closes the bundle's topics, which load again
    here on their next use. Its namespaces' boundaries are stored (and split) as a cluster's."""

    def __init__(self, me: Callable[[], BrokerUrls], unload_topics: TopicUnloader, layouts: BundleLayouts,
                 load: LoadSource) -> None:
        self._me = me
        self._unload_topics = unload_topics
        self.layouts = layouts
        self._load = load

    async def owner_of(self, name: TopicName, authoritative: bool = False) -> BrokerUrls | None:
        return None

    async def check_serves(self, name: TopicName) -> None:
        return None

    async def bundles(self, ns: NamespaceName) -> list[Bundle]:
        return await self.layouts.bundles(ns)

    async def bundle_owner(self, bundle: Bundle) -> tuple[BrokerUrls | None, bool]:
        return None, True

    async def unload(self, bundle: Bundle, destination: str | None = None) -> int:
        return await self._unload_topics(lambda name: in_bundle(name, bundle))

    async def split(self, bundle: Bundle, limit: int) -> list[Bundle]:
        split_edges(await self.layouts.edges(bundle.namespace), bundle, limit)  # refusals change nothing
        # Alone, a topic that loads again meanwhile is still served here, in its half.
        await self._unload_topics(lambda name: in_bundle(name, bundle))
        return await self.layouts.split(bundle, limit)

    async def bundle_stats(self) -> dict[Bundle, BundleStats]:
        loaded = self._load()
        for ns in {name.namespace_name for name, _rate in loaded}:
            await self.layouts.edges(ns)  # read once per namespace (lookups here never need them)
        return stats_by_bundle(loaded, self.layouts, None)

    async def brokers(self) -> list[BrokerRecord]:
        return [BrokerRecord(self._me(), BrokerLoad())]

    def owned(self) -> list[Bundle] | None:
        return None


def in_bundle(name: TopicName, bundle: Bundle) -> bool:
    return name.namespace_name == bundle.namespace and bundle.holds(topic_hash(name))


def stats_by_bundle(loaded: list[tuple[TopicName, float]], layouts: BundleLayouts,
                    owned: set[Bundle] | None) -> dict[Bundle, BundleStats]:
    """The loaded topics' rates and counts summed per bundle (from cached boundaries); with
    `owned`, those bundles only, each listed even without a loaded topic."""
    totals = {bundle: BundleStats() for bundle in owned} if owned is not None else {}
    for name, rate in loaded:
        bundle = layouts.cached_bundle_for(name)
        if bundle is None or (owned is not None and bundle not in owned):
            continue
        seen = totals.get(bundle, BundleStats())
        totals[bundle] = BundleStats(seen.msg_rate + rate, seen.topics + 1)
    return totals
