"""Several brokers on one metadata store: each namespace bundle owned by one broker at a time.

Ownership is an ephemeral node `/namespace/<tenant>/<namespace>/<range>` of the owner's
ZooKeeper session, holding the owner's URLs (Pulsar's layout). It is taken on the first lookup
(or PRODUCER/SUBSCRIBE) of a topic of the bundle: by this broker when the load manager
(placement.py) picks it or the lookup is authoritative (a redirect sent it here), else the
lookup is redirected to the broker picked. A broker that dies loses its nodes with its session,
and the next lookup places the bundle again; the new owner's open of each managed ledger fences
and recovers the dead owner's ledgers, so nothing it acknowledged is lost and it cannot write
any more. A broker whose session expires stops (node.py), so it serves nothing it lost.

The number of bundles of a namespace is fixed at its first use, in `/namespace/<t>/<ns>`, so
every broker splits it the same way whatever its own default.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from taureau.broker.ownership.api import TopicUnloader, in_bundle
from taureau.broker.ownership.bundles import MAX_BUNDLES, Bundle, bundle_for, bundles_of
from taureau.broker.ownership.placement import least_loaded
from taureau.broker.ownership.registry import (
    BrokerLoad,
    BrokerRecord,
    BrokerRecordError,
    BrokerUrls,
    broker_path,
    live_brokers,
)
from taureau.common.errors import NodeExistsError, ServiceNotReadyError
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.claims import claim_ephemeral
from taureau.metadata.store import MetadataStore

log = logging.getLogger(__name__)

NAMESPACES = "/namespace"
REPORT_INTERVAL_S = 5.0  # load report refresh (sooner after a bundle is taken or given up)

# (topics loaded, messages per second in and out) of this broker, for its load report.
LoadSource = Callable[[], tuple[int, float]]


def bundle_path(bundle: Bundle) -> str:
    return f"{NAMESPACES}/{bundle.namespace}/{bundle.range}"


class ClusterOwnership:
    """This broker's registration, its owned bundles and its lookups' answers. Owns the set
    of bundles this broker serves; only its own methods change it."""

    def __init__(
        self, store: MetadataStore, unload_topics: TopicUnloader, load: LoadSource, *,
        default_bundles: int, report_interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self.store = store
        self._unload_topics = unload_topics
        self._load = load
        self.default_bundles = default_bundles
        self.report_interval_s = report_interval_s
        self.me: BrokerUrls | None = None  # set once registered: serving starts then
        self._owned: set[Bundle] = set()
        self._releasing: set[Bundle] = set()  # being given up: refused, not taken again
        self._claims: dict[Bundle, asyncio.Task[BrokerUrls | None]] = {}  # one claim per bundle at once
        self._counts: dict[NamespaceName, int] = {}  # bundles per namespace (fixed at first use)
        self._report_version = 0
        self._report_now = asyncio.Event()
        self._report_task: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------------------

    async def start(self, me: BrokerUrls, wait_s: float) -> None:
        """Register once this broker's ports serve: from now on lookups may send clients here.
        A node left by this broker's previous life is waited for (up to wait_s)."""
        record = BrokerRecord(me, BrokerLoad())
        await claim_ephemeral(self.store, broker_path(me.broker_id), record.encode(), wait_s=wait_s,
                              what=f"the broker id {me.broker_id}")
        self._report_version = 0
        self.me = me
        self._report_task = asyncio.get_running_loop().create_task(self._report_loop())
        log.info("registered broker %s (%s)", me.broker_id, me.pulsar or me.pulsar_tls)

    async def close(self) -> None:
        """Serve no more: new loads are refused; the topics are closed by the broker and the
        ownership nodes go with the metadata session."""
        self.me = None
        if self._report_task is not None:
            self._report_task.cancel()

    # -- lookups -----------------------------------------------------------------------------

    async def owner_of(self, name: TopicName, authoritative: bool = False) -> BrokerUrls | None:
        me = self._serving()
        bundle = await self._bundle_for(name)
        if bundle in self._owned:
            return None
        if bundle in self._releasing:
            raise ServiceNotReadyError(f"bundle {bundle} is being unloaded: look {name} up again")
        owner, owned = await self.bundle_owner(bundle)
        if owned:
            return owner
        if not authoritative:
            picked = least_loaded(await live_brokers(self.store), me, self._my_load())
            if picked.broker_id != me.broker_id:
                return picked  # the lookup is redirected there, authoritative: it takes the bundle
        return await self._claim(bundle)

    async def check_serves(self, name: TopicName) -> None:
        owner = await self.owner_of(name, authoritative=True)
        if owner is not None:
            raise ServiceNotReadyError(f"topic {name} is served by broker {owner.broker_id}: look it up again")

    async def bundle_owner(self, bundle: Bundle) -> tuple[BrokerUrls | None, bool]:
        if bundle in self._owned:
            return None, True
        got = await self.store.get(bundle_path(bundle))
        if got is None:
            return None, False
        try:
            record = BrokerRecord.decode("", got[0])
        except BrokerRecordError:
            raise ServiceNotReadyError(f"the ownership node of bundle {bundle} is unreadable") from None
        me = self.me
        if me is not None and record.urls.broker_id == me.broker_id:
            # Ours but not in _owned: being given up right now.
            raise ServiceNotReadyError(f"bundle {bundle} is being unloaded")
        return record.urls, True

    async def _claim(self, bundle: Bundle) -> BrokerUrls | None:
        task = self._claims.get(bundle)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._take(bundle))
            self._claims[bundle] = task
            task.add_done_callback(lambda _t: self._claims.pop(bundle, None))
        return await asyncio.shield(task)

    async def _take(self, bundle: Bundle) -> BrokerUrls | None:
        """Create the ownership node; the winner of a race is the owner (None: this broker)."""
        me = self._serving()
        try:
            await self.store.put(bundle_path(bundle), BrokerRecord(me).encode(), -1, ephemeral=True)
        except NodeExistsError:
            owner, owned = await self.bundle_owner(bundle)
            if not owned:  # taken and let go meanwhile: the client's next lookup tries again
                raise ServiceNotReadyError(f"bundle {bundle} changed owner: look it up again") from None
            return owner
        self._owned.add(bundle)
        self._report_now.set()
        log.info("took bundle %s", bundle)
        return None

    # -- bundles -----------------------------------------------------------------------------

    async def bundles(self, ns: NamespaceName) -> list[Bundle]:
        return bundles_of(ns, await self._bundle_count(ns))

    async def _bundle_for(self, name: TopicName) -> Bundle:
        return bundle_for(name, await self._bundle_count(name.namespace_name))

    async def _bundle_count(self, ns: NamespaceName) -> int:
        count = self._counts.get(ns)
        if count is not None:
            return count
        path = f"{NAMESPACES}/{ns}"
        got = await self.store.get(path)
        if got is None:
            try:
                await self.store.put(path, json.dumps({"numBundles": self.default_bundles}).encode(), -1)
            except NodeExistsError:
                pass  # another broker fixed it first: its number holds
            got = await self.store.get(path)
        count = _stored_count(path, got[0] if got is not None else b"")
        self._counts[ns] = count
        return count

    def owned(self) -> list[Bundle]:
        return sorted(self._owned, key=str)

    async def unload(self, bundle: Bundle) -> int:
        if bundle not in self._owned:
            return 0
        # Refused from now on (clients get ServiceNotReady and look it up again), so no topic
        # of it loads while its loaded ones close; the node goes only once they are closed,
        # so no other broker opens their ledgers before this one let go of them.
        self._owned.discard(bundle)
        self._releasing.add(bundle)
        try:
            count = len(await self.bundles(bundle.namespace))
            closed = await self._unload_topics(lambda name: in_bundle(name, bundle, count))
            await self.store.delete(bundle_path(bundle))
        finally:
            self._releasing.discard(bundle)
        self._report_now.set()
        log.info("unloaded bundle %s (%d topics)", bundle, closed)
        return closed

    async def brokers(self) -> list[BrokerRecord]:
        return await live_brokers(self.store)

    # -- load reports ------------------------------------------------------------------------

    def _serving(self) -> BrokerUrls:
        me = self.me
        if me is None:
            raise ServiceNotReadyError("this broker is not serving (starting or stopping)")
        return me

    def _my_load(self) -> BrokerLoad:
        topics, rate = self._load()
        return BrokerLoad(len(self._owned), topics, rate)

    async def _report_loop(self) -> None:
        while self.me is not None:
            try:
                await asyncio.wait_for(self._report_now.wait(), self.report_interval_s)
            except TimeoutError:
                pass
            self._report_now.clear()
            me = self.me
            if me is None:
                return
            try:
                stat = await self.store.put(broker_path(me.broker_id), BrokerRecord(me, self._my_load()).encode(),
                                            self._report_version)
                self._report_version = stat.version
            except Exception:
                # Lost with the session (the node stops) or a slow store: the next turn retries.
                log.warning("writing the load report of %s failed", me.broker_id, exc_info=True)


def _stored_count(path: str, raw: bytes) -> int:
    try:
        count = int(json.loads(raw)["numBundles"])
    except (ValueError, KeyError, TypeError):
        raise ServiceNotReadyError(f"{path} does not hold a bundle count") from None
    if not 1 <= count <= MAX_BUNDLES:
        raise ServiceNotReadyError(f"{path} holds {count} bundles: 1 to {MAX_BUNDLES} allowed")
    return count
