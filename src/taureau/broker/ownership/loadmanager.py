"""The load manager: every `interval_s`, each broker splits the bundles it serves that grew too
hot or too large, and the leader of the brokers moves bundles off overloaded ones.

Leadership is Pulsar's: the ephemeral node `/loadbalance/leader` holds the id of the broker
that created it; the others try again each round, so when the leader dies (its session
expires) another broker leads from its next round. The leader reads every broker's load report
(`/loadbalance/brokers/<id>`: message rate and the hottest bundles), decides (shedding.py),
and asks each overloaded owner to unload the bundles picked, naming the broker that should
take each one (`PUT .../{bundle}/unload?destinationBroker=<id>`, the owner's own admin call).
Which bundles it shed and when is the leader's memory: a new leader starts with no grace
periods, as Pulsar's does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import httpx

from taureau.broker.ownership.api import Ownership
from taureau.broker.ownership.bundles import Bundle, parse_range
from taureau.broker.ownership.cluster import ClusterOwnership
from taureau.broker.ownership.registry import BrokerUrls, live_brokers
from taureau.broker.ownership.settings import LoadBalancerSettings
from taureau.broker.ownership.shedding import pick_splits, pick_unloads
from taureau.common.errors import NodeExistsError, TaureauError
from taureau.common.names import NamespaceName

log = logging.getLogger(__name__)

LEADER = "/loadbalance/leader"
MAX_MOVES_PER_ROUND = 16  # bundles the leader moves in one round, at most
MAX_SPLITS_PER_ROUND = 16
CALL_TIMEOUT_S = 30.0  # an unload at another broker closes its topics first

# Headers for the leader's calls to other brokers (the internal token when auth is on).
AuthHeaders = Callable[[], dict[str, str]]


class LoadManager:
    """Owns the leader's grace periods (bundle -> when it was shed) and its round task."""

    def __init__(self, ownership: Ownership, settings: LoadBalancerSettings, *,
                 cluster: ClusterOwnership | None, auth_headers: AuthHeaders) -> None:
        self.ownership = ownership
        self.settings = settings
        self.cluster = cluster
        self._auth_headers = auth_headers
        self._shed_at: dict[str, float] = {}
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.settings.enabled and (self.settings.auto_split_enabled or self.settings.shedding_enabled):
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval_s)
            try:
                await self.run_once()
            except Exception:
                # A store or a broker away for a moment: the next round decides afresh.
                log.warning("load manager round failed", exc_info=True)

    async def run_once(self) -> None:
        if self.settings.auto_split_enabled:
            await self._split_hot()
        if self.cluster is not None and self.settings.shedding_enabled and await self._lead(self.cluster):
            await self._shed(self.cluster)

    # -- auto split (every broker, its own bundles) ------------------------------------------

    async def _split_hot(self) -> None:
        stats = await self.ownership.bundle_stats()
        counts = {str(ns): len(await self.ownership.bundles(ns)) for ns in {b.namespace for b in stats}}
        for bundle in pick_splits(stats, counts, self.settings)[:MAX_SPLITS_PER_ROUND]:
            try:
                halves = await self.ownership.split(bundle, self.settings.max_bundles)
                log.info("split bundle %s (%s) into %s", bundle, stats[bundle], [h.range for h in halves])
            except TaureauError as exc:
                log.warning("auto split of bundle %s failed: %s", bundle, exc)

    # -- shedding (the leader) ---------------------------------------------------------------

    async def _lead(self, cluster: ClusterOwnership) -> bool:
        me = cluster.me
        if me is None:
            return False
        store = cluster.store
        got = await store.get(LEADER)
        if got is None:
            try:
                await store.put(LEADER, json.dumps({"brokerId": me.broker_id}).encode(), -1, ephemeral=True)
            except NodeExistsError:
                pass  # another broker won this round
            got = await store.get(LEADER)
        try:
            leader = str(json.loads(got[0])["brokerId"]) if got is not None else ""
        except (ValueError, KeyError, TypeError):
            leader = ""  # not a leader record: nobody leads until it is gone
        leading = leader == me.broker_id
        if leading != self.leading:
            log.info("%s the load manager leader", "became" if leading else "is no longer")
            self._shed_at.clear()
        self.leading = leading
        return leading

    async def _shed(self, cluster: ClusterOwnership) -> None:
        now = time.monotonic()
        grace = self.settings.grace_s
        self._shed_at = {name: at for name, at in self._shed_at.items() if now - at < grace}
        records = await live_brokers(cluster.store)
        urls = {r.urls.broker_id: r.urls for r in records}
        for move in pick_unloads(records, self._shed_at, now, self.settings)[:MAX_MOVES_PER_ROUND]:
            self._shed_at[move.bundle] = now
            try:
                bundle = _parse_bundle(move.bundle)
                log.info("shedding bundle %s from %s to %s", move.bundle, move.source, move.destination)
                me = cluster.me
                if me is not None and move.source == me.broker_id:
                    await cluster.unload(bundle, move.destination)
                else:
                    await self._unload_at(urls[move.source], bundle, move.destination)
            except (TaureauError, httpx.HTTPError, KeyError, ValueError) as exc:
                log.warning("shedding bundle %s from %s failed: %s", move.bundle, move.source, exc)

    async def _unload_at(self, owner: BrokerUrls, bundle: Bundle, destination: str) -> None:
        base = owner.web or owner.web_tls
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as client:
            answer = await client.put(f"{base}/admin/v2/namespaces/{bundle.namespace}/{bundle.range}/unload",
                                      params={"destinationBroker": destination, "authoritative": "true"},
                                      headers=self._auth_headers())
        if answer.status_code >= 300:
            raise httpx.HTTPStatusError(f"HTTP {answer.status_code}: {answer.text[:200]}",
                                        request=answer.request, response=answer)


def _parse_bundle(name: str) -> Bundle:
    """`tenant/namespace/0x..._0x...` (a load report's key) -> the bundle."""
    ns_text, range_text = name.rsplit("/", 1)
    return parse_range(NamespaceName.parse(ns_text), range_text)
