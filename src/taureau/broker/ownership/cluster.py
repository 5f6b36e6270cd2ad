"""Several brokers on one metadata store: each namespace bundle owned by one broker at a time.

Ownership is an ephemeral node `/namespace/<tenant>/<namespace>/<range>` of the owner's
ZooKeeper session, holding the owner's URLs (Pulsar's layout). It is taken on the first lookup
(or PRODUCER/SUBSCRIBE) of a topic of the bundle: by this broker when the load manager
(placement.py) picks it or the lookup is authoritative (a redirect sent it here), else the
lookup is redirected to the broker picked. A broker that dies loses its nodes with its session,
and the next lookup places the bundle again; the new owner's open of each managed ledger fences
and recovers the dead owner's ledgers, so nothing it acknowledged is lost and it cannot write
any more. A broker whose session expires stops (node.py), so it serves nothing it lost.

A namespace's bundle boundaries are fixed at its first use and changed only by a split, in
`/namespace/<t>/<ns>` (layout.py), so every broker cuts it the same way whatever its own
default. A split is made by the bundle's owner: it closes the bundle's topics (as an unload),
writes the new boundaries, then lets the bundle go; the halves are placed by their next lookup.

An unload may name the broker that should take the bundle (the load manager's shedding does):
the owner leaves a hint, `/loadbalance/assignments/<t>/<ns>/<range>` (ephemeral, valid for
ASSIGNMENT_TTL_S), that the next lookup's placement follows while that broker is alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from taureau.broker.ownership.api import LoadSource, TopicUnloader, in_bundle, stats_by_bundle
from taureau.broker.ownership.bundles import Bundle, split_edges
from taureau.broker.ownership.layout import BundleLayouts
from taureau.broker.ownership.placement import least_loaded
from taureau.broker.ownership.registry import (
    BrokerLoad,
    BrokerRecord,
    BrokerRecordError,
    BrokerUrls,
    BundleStats,
    broker_path,
    hottest,
    live_brokers,
)
from taureau.common.errors import (
    MetadataError,
    NodeExistsError,
    NotFoundError,
    ServiceNotReadyError,
    TaureauError,
)
from taureau.common.names import NamespaceName, TopicName
from taureau.metadata.claims import claim_ephemeral
from taureau.metadata.store import MetadataStore

log = logging.getLogger(__name__)

NAMESPACES = "/namespace"
ASSIGNMENTS = "/loadbalance/assignments"
ASSIGNMENT_TTL_S = 60.0  # a shed bundle's destination is followed for this long
REPORT_INTERVAL_S = 5.0  # load report refresh (sooner after a bundle is taken or given up)

def bundle_path(bundle: Bundle) -> str:
    return f"{NAMESPACES}/{bundle.namespace}/{bundle.range}"


def assignment_path(bundle: Bundle) -> str:
    return f"{ASSIGNMENTS}/{bundle.namespace}/{bundle.range}"


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
        self.layouts = BundleLayouts(store, default_bundles, watch=True)
        self.report_interval_s = report_interval_s
        self.me: BrokerUrls | None = None  # set once registered: serving starts then
        self._owned: set[Bundle] = set()
        self._releasing: set[Bundle] = set()  # being given up: refused, not taken again
        self._claims: dict[Bundle, asyncio.Task[BrokerUrls | None]] = {}  # one claim per bundle at once
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
        self.layouts.close()
        if self._report_task is not None:
            self._report_task.cancel()

    # -- lookups -----------------------------------------------------------------------------

    async def owner_of(self, name: TopicName, authoritative: bool = False) -> BrokerUrls | None:
        me = self._serving()
        bundle = await self.layouts.bundle_for(name)
        if bundle in self._owned:
            return None
        if bundle in self._releasing:
            raise ServiceNotReadyError(f"bundle {bundle} is being unloaded: look {name} up again")
        owner, owned = await self.bundle_owner(bundle)
        if owned:
            return owner
        if not authoritative:
            records = await live_brokers(self.store)
            picked = await self._assigned(bundle, records) or least_loaded(records, me, self._my_load())
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
        try:
            current = await self.layouts.still_has(bundle)
        except TaureauError:
            current = False  # the boundaries are gone or unreadable: take nothing
        if not current:
            # Split meanwhile (its owner wrote the new boundaries before letting it go): the
            # bundle no longer exists; the client's next lookup finds the topic's new one.
            await self.store.delete(bundle_path(bundle))
            raise ServiceNotReadyError(f"the bundles of {bundle.namespace} changed: look it up again")
        self._owned.add(bundle)
        self._report_now.set()
        await self._forget_assignment(bundle)
        log.info("took bundle %s", bundle)
        return None

    async def _assigned(self, bundle: Bundle, records: list[BrokerRecord]) -> BrokerUrls | None:
        """The live broker an unload named for `bundle`, while its hint holds."""
        got = await self.store.get(assignment_path(bundle))
        if got is None:
            return None
        try:
            hint = json.loads(got[0])
            broker_id, until_ms = str(hint["broker"]), float(hint["untilMs"])
        except (ValueError, KeyError, TypeError):
            return None  # not ours: placement by load
        if until_ms < time.time() * 1000:
            return None
        me = self._serving()
        if broker_id == me.broker_id:
            return me
        return next((r.urls for r in records if r.urls.broker_id == broker_id), None)

    async def _forget_assignment(self, bundle: Bundle) -> None:
        try:
            await self.store.delete(assignment_path(bundle))
        except NotFoundError:
            pass
        except MetadataError:
            log.warning("dropping the assignment hint of %s failed (it expires)", bundle, exc_info=True)

    # -- bundles -----------------------------------------------------------------------------

    async def bundles(self, ns: NamespaceName) -> list[Bundle]:
        return await self.layouts.bundles(ns)

    def owned(self) -> list[Bundle]:
        return sorted(self._owned, key=str)

    async def unload(self, bundle: Bundle, destination: str | None = None) -> int:
        if bundle not in self._owned:
            return 0
        if destination:
            until_ms = time.time() * 1000 + ASSIGNMENT_TTL_S * 1000
            await self.store.put(assignment_path(bundle), json.dumps({"broker": destination, "untilMs": until_ms}).encode(),
                                 ephemeral=True)
        else:
            await self._forget_assignment(bundle)
        closed = await self._release(bundle, None)
        log.info("unloaded bundle %s (%d topics)%s", bundle, closed, f" for {destination}" if destination else "")
        return closed

    async def split(self, bundle: Bundle, limit: int) -> list[Bundle]:
        """Cut `bundle` in two: its topics closed (clients look them up again), the new
        boundaries written, the bundle let go. An unowned bundle is taken first; another
        broker's is refused (the REST call is redirected there before)."""
        split_edges(await self.layouts.edges(bundle.namespace), bundle, limit)  # refusals change nothing
        if bundle not in self._owned and await self._claim(bundle) is not None:
            raise ServiceNotReadyError(f"bundle {bundle} is served by another broker")
        halves: list[Bundle] = []

        async def write() -> None:
            halves.extend(await self.layouts.split(bundle, limit))

        await self._release(bundle, write)
        return halves

    async def _release(self, bundle: Bundle, before_letting_go: Callable[[], Awaitable[None]] | None) -> int:
        # Refused from now on (clients get ServiceNotReady and look it up again), so no topic
        # of it loads while its loaded ones close; the node goes only once they are closed,
        # so no other broker opens their ledgers before this one let go of them.
        self._owned.discard(bundle)
        self._releasing.add(bundle)
        try:
            closed = await self._unload_topics(lambda name: in_bundle(name, bundle))
            if before_letting_go is not None:
                try:
                    await before_letting_go()
                except BaseException:
                    self._owned.add(bundle)  # the node is still ours: keep serving it
                    raise
            await self.store.delete(bundle_path(bundle))
        finally:
            self._releasing.discard(bundle)
        self._report_now.set()
        return closed

    async def brokers(self) -> list[BrokerRecord]:
        return await live_brokers(self.store)

    async def bundle_stats(self) -> dict[Bundle, BundleStats]:
        return self._bundle_stats()

    def _bundle_stats(self) -> dict[Bundle, BundleStats]:
        # Owned bundles' namespaces are cached: owner_of read their boundaries.
        return stats_by_bundle(self._load(), self.layouts, self._owned)

    # -- load reports ------------------------------------------------------------------------

    def _serving(self) -> BrokerUrls:
        me = self.me
        if me is None:
            raise ServiceNotReadyError("this broker is not serving (starting or stopping)")
        return me

    def _my_load(self) -> BrokerLoad:
        loaded = self._load()
        return BrokerLoad(len(self._owned), len(loaded), sum(rate for _name, rate in loaded))

    def _record(self, me: BrokerUrls) -> BrokerRecord:
        stats = hottest({str(b): st for b, st in self._bundle_stats().items()})
        return BrokerRecord(me, self._my_load(), stats)

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
                stat = await self.store.put(broker_path(me.broker_id), self._record(me).encode(), self._report_version)
                self._report_version = stat.version
            except Exception:
                # Lost with the session (the node stops) or a slow store: the next turn retries.
                log.warning("writing the load report of %s failed", me.broker_id, exc_info=True)
