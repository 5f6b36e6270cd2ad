"""At the start of a broker that serves every bundle, load the stored topics of the namespaces
that replicate, so that their replicators resume what they had not sent before the broker
stopped, with no client needed to load them (Pulsar loads a replicated namespace's topics
when a broker takes its bundle)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from taureau.broker.resources import Resources
from taureau.common.errors import TaureauError
from taureau.common.names import NamespaceName, TopicName

log = logging.getLogger(__name__)

MAX_TOPICS = 10_000  # loaded at most; the rest resume when a client loads them


async def load_replicated_topics(
    resources: Resources,
    local: str,
    list_topics: Callable[[NamespaceName], Awaitable[list[str]]],
    load: Callable[[TopicName], Awaitable[object]],
) -> int:
    """Load (one at a time) each stored persistent topic of a namespace whose replication
    clusters name another cluster; the number loaded."""
    loaded = 0
    try:
        for tenant in await resources.list_tenants():
            for ns_name in await resources.list_namespaces(tenant):
                ns = NamespaceName.parse(ns_name)
                if not set((await resources.get_policies(ns)).replication_clusters) - {local}:
                    continue
                for name in await list_topics(ns):
                    if loaded >= MAX_TOPICS:
                        log.warning("resumed replication of %d topics; the others resume when loaded", loaded)
                        return loaded
                    try:
                        await load(TopicName.parse(name))
                    except TaureauError:  # a partition never written, or deleted meanwhile
                        continue
                    loaded += 1
    except TaureauError as exc:  # the metadata store failing at start: clients load them later
        log.warning("could not load the topics of replicated namespaces: %s", exc)
    if loaded:
        log.info("loaded %d topics of replicated namespaces: their replicators resume", loaded)
    return loaded
