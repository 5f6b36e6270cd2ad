"""Each namespace's bundle boundaries, as every broker of the store must see them.

They live in `/namespace/<tenant>/<namespace>` (`{"numBundles": N, "boundaries": ["0x00000000",
...]}`, Pulsar's BundlesData fields), written by the first broker that uses the namespace (N
equal ranges, its `--bundles-per-namespace`) and changed only by a split, with compare-and-set
on the node's version, so two splits never lose each other. A record holding only
`numBundles` (written before splits existed) means N equal ranges.

A broker caches the boundaries it read, with the node's version. With `watch` (several
brokers) it watches the node and re-reads it on every change, so another broker's split
reaches this one's lookups within a watch round trip; a claim of a bundle checks the version
once more (`still_has`), so a broker whose cache is behind never takes a bundle that no
longer exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from taureau.broker.ownership.bundles import (
    Bundle,
    boundaries,
    bundle_at,
    check_edges,
    ranges_of,
    split_edges,
)
from taureau.common.errors import (
    BadVersionError,
    BrokerError,
    NodeExistsError,
    NotAllowedError,
    ServiceNotReadyError,
)
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.store import MetadataStore, WatchEvent

log = logging.getLogger(__name__)

NAMESPACES = "/namespace"
SPLIT_RETRIES = 10  # compare-and-set rounds against concurrent splits of other bundles


def layout_path(ns: NamespaceName) -> str:
    return f"{NAMESPACES}/{ns}"


class BundleLayouts:
    """The cached boundaries of the namespaces this broker used; only its methods change them."""

    def __init__(self, store: MetadataStore, default_bundles: int, *, watch: bool) -> None:
        self.store = store
        self.default_bundles = default_bundles
        self._watch = watch
        self._edges: dict[NamespaceName, tuple[list[int], int]] = {}  # ns -> (edges, node version)
        self._watches: dict[NamespaceName, Callable[[], None]] = {}
        self._refreshing: dict[NamespaceName, asyncio.Task[None]] = {}  # one re-read per namespace
        self._closed = False  # no watch is set, and no event re-read, after close()

    async def edges(self, ns: NamespaceName) -> list[int]:
        cached = self._edges.get(ns)
        if cached is None:
            cached = await self._read(ns, create=True)
        return cached[0]

    async def bundles(self, ns: NamespaceName) -> list[Bundle]:
        return ranges_of(ns, await self.edges(ns))

    async def bundle_for(self, name: TopicName) -> Bundle:
        ns = name.namespace_name
        return bundle_at(ns, await self.edges(ns), name)

    def cached_bundle_for(self, name: TopicName) -> Bundle | None:
        """`name`'s bundle if its namespace's boundaries are cached (for load reports, which
        must not read the store per topic)."""
        cached = self._edges.get(name.namespace_name)
        return None if cached is None else bundle_at(name.namespace_name, cached[0], name)

    async def still_has(self, bundle: Bundle) -> bool:
        """Whether `bundle` is one of its namespace's ranges as stored now (re-read, and the
        cache brought up to date)."""
        edges, _version = await self._read(bundle.namespace, create=False)
        return bundle in ranges_of(bundle.namespace, edges)

    async def split(self, bundle: Bundle, limit: int) -> list[Bundle]:
        """Cut `bundle` in two in the stored boundaries (compare-and-set; refusals as
        bundles.split_edges, nothing written then); the two halves."""
        ns = bundle.namespace
        for _ in range(SPLIT_RETRIES):
            edges, version = await self._read(ns, create=True)
            new = split_edges(edges, bundle, limit)
            try:
                await self.store.put(layout_path(ns), _encode(new), version)
            except BadVersionError:
                continue  # another bundle of the namespace was split meanwhile: cut again
            self._edges[ns] = (new, version + 1)
            log.info("split bundle %s into %d bundles", bundle, len(new) - 1)
            index = new.index(bundle.lower)
            return ranges_of(ns, new[index : index + 3])
        raise BrokerError(f"the bundles of {ns} changed concurrently, try again")

    def close(self) -> None:
        self._closed = True
        for cancel in self._watches.values():
            cancel()
        self._watches.clear()
        for task in self._refreshing.values():
            task.cancel()

    async def _read(self, ns: NamespaceName, *, create: bool) -> tuple[list[int], int]:
        path = layout_path(ns)
        if self._watch and not self._closed and ns not in self._watches:
            self._watches[ns] = self.store.watch(path, lambda event, _path: self._changed(ns, event))
        got = await self.store.get(path)
        if got is None and create:
            try:
                await self.store.put(path, _encode(boundaries(self.default_bundles)), -1)
            except NodeExistsError:
                pass  # another broker fixed it first: its boundaries hold
            got = await self.store.get(path)
        if got is None:
            raise ServiceNotReadyError(f"{path} is gone: the namespace's bundles are not set")
        cached = (_decode(path, got[0]), got[1].version)
        known = self._edges.get(ns)
        if known is None or known[1] < cached[1]:  # never go back to an older read
            self._edges[ns] = cached
        return self._edges[ns]

    def _changed(self, ns: NamespaceName, event: WatchEvent) -> None:
        """On the store's loop: re-read once (a change during the re-read is seen by it or
        fires again)."""
        # After close: an event already queued when the watches were cancelled must not start
        # a re-read, whose _read would set the watch again (a closed broker kept following
        # splits: seen as a flaky test_load_manager).
        if event is WatchEvent.SESSION_EXPIRED or ns in self._refreshing or self._closed:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(ns))
        self._refreshing[ns] = task

    async def _refresh(self, ns: NamespaceName) -> None:
        try:
            await self._read(ns, create=False)
        except Exception:
            # Gone (namespace deleted) or the store is away: the next use reads it again.
            self._edges.pop(ns, None)
            log.debug("re-reading the bundles of %s failed", ns, exc_info=True)
        finally:
            self._refreshing.pop(ns, None)


def _encode(edges: list[int]) -> bytes:
    return json.dumps({"numBundles": len(edges) - 1, "boundaries": [f"0x{e:08x}" for e in edges]}).encode()


def _decode(path: str, raw: bytes) -> list[int]:
    """The stored boundaries; ServiceNotReadyError for a record nobody can use (written by
    something else), so lookups fail clearly instead of placing topics by a guess."""
    try:
        data = json.loads(raw)
        stored = data.get("boundaries")
        if stored is None:
            return boundaries(int(data["numBundles"]))
        edges = check_edges([int(str(e), 16) for e in stored])
        if int(data.get("numBundles", len(edges) - 1)) != len(edges) - 1:
            raise ValueError("numBundles does not match the boundaries")
        return edges
    except (ValueError, KeyError, TypeError, AttributeError, NotAllowedError):
        raise ServiceNotReadyError(f"{path} does not hold a namespace's bundle boundaries") from None

