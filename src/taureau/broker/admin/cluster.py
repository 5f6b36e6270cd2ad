"""The cluster as the dashboard's Cluster page and `pulsar-admin brokers` / `bookies` see it:
brokers, bookies and the ensembles of a topic's ledgers.

Pulsar's paths where Pulsar has them (`GET /admin/v2/brokers/{cluster}`, `GET
/admin/v2/bookies/all`), Taureau's under /admin/taureau for what Pulsar shows elsewhere (its
bookkeeper shell prints a ledger's ensemble). All are the superusers' (a path the
authorization rules do not name). The brokers are those registered (cluster mode) or this
one alone (broker/ownership).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from fastapi import APIRouter, Request

from taureau.broker.resources import ResourceNotFoundError
from taureau.broker.service import BrokerService
from taureau.common.errors import NoSuchLedgerError
from taureau.common.names import TopicName
from taureau.storage.ledger.cluster import ClusterLedgerClient
from taureau.storage.ledger.local import LocalLedgerClient
from taureau.storage.ledger.registry import AVAILABLE, available_bookies

router = APIRouter(tags=["cluster"])

MAX_TOPICS = 1000  # topics listed per broker
MAX_LEDGERS = 100  # a topic's ledgers described, the newest
MAX_BOOKIES = 1000


def _service(request: Request) -> BrokerService:
    return request.app.state.service


def _check_cluster(service: BrokerService, cluster: str) -> None:
    if cluster != service.config.cluster_name:
        raise ResourceNotFoundError(f"cluster {cluster} does not exist")


@router.get("/admin/v2/brokers/{cluster}")
async def brokers(request: Request, cluster: str) -> list[str]:
    """Pulsar's `brokers list`: the active brokers of the cluster, as host:port."""
    service = _service(request)
    _check_cluster(service, cluster)
    return sorted(record.urls.broker_id for record in await service.ownership.brokers())


@router.get("/admin/v2/bookies/all")
async def all_bookies(request: Request) -> dict[str, Any]:
    """Pulsar's `bookies list-bookies`: {"bookies": [{"bookieId": ...}]}."""
    return {"bookies": [{"bookieId": b["id"]} for b in await _bookies(_service(request))]}


@router.get("/admin/taureau/cluster")
async def cluster(request: Request) -> dict[str, Any]:
    """Brokers with their URLs and loaded topics; bookies with their state and disk use."""
    service = _service(request)
    topics = sorted(str(t.name) for t in service.loaded_topics())
    me = service.own_urls().broker_id
    owned = service.ownership.owned()
    brokers = []
    for record in sorted(await service.ownership.brokers(), key=lambda r: r.urls.broker_id):
        urls, own = record.urls, record.urls.broker_id == me
        brokers.append({
            "id": urls.broker_id,
            "webServiceUrl": urls.web or urls.web_tls,
            "brokerServiceUrl": urls.pulsar or urls.pulsar_tls,
            "self": own,
            # This broker's bundles (null: a broker alone owns every bundle, or another
            # broker's, which it does not report); another broker's topics are not listed,
            # their count is from its load report.
            "bundles": [str(b) for b in owned] if own and owned is not None else None,
            "topics": topics[:MAX_TOPICS] if own else [],
            "topicCount": len(topics) if own else record.load.topics,
        })
    return {"cluster": service.config.cluster_name, "brokers": brokers, "bookies": await _bookies(service)}


async def _bookies(service: BrokerService) -> list[dict[str, Any]]:
    """The bookies the broker writes to: its embedded ones (with their disk use), or the
    `taureau bookie` processes registered in the metadata store (with what they registered).
    A registered bookie takes writes: Taureau's bookies have no read-only mode yet."""
    client = service.factory.ledgers
    if isinstance(client, LocalLedgerClient):
        return [{"id": bookie_id, "kind": "embedded", "writable": True, "readOnly": False,
                 "diskUsageBytes": await asyncio.to_thread(_disk_usage, bookie.data_dir)}
                for bookie_id, bookie in list(client.local_bookies.items())[:MAX_BOOKIES]]
    if isinstance(client, ClusterLedgerClient):
        out = []
        for bookie_id in sorted(await available_bookies(service.store))[:MAX_BOOKIES]:
            found = await service.store.get(f"{AVAILABLE}/{bookie_id}")
            info = _registration(found[0]) if found else {}
            out.append({"id": bookie_id, "kind": "remote", "writable": True, "readOnly": False,
                        "diskUsageBytes": None,  # not reported by a remote bookie yet
                        "registeredMs": info.get("registered_ms")})
        return out
    return []


def _registration(raw: bytes) -> dict[str, Any]:
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _disk_usage(path: str) -> int:
    """Bytes of the files under `path` (a bookie's journal, entry logs and index)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except OSError:  # removed meanwhile (a compacted entry log)
                continue
    return total


@router.get("/admin/taureau/persistent/{tenant}/{namespace}/{topic}/ledgers")
async def topic_ledgers(request: Request, tenant: str, namespace: str, topic: str) -> dict[str, Any]:
    """The topic's ledgers (the newest MAX_LEDGERS) with each one's ensembles and quorums:
    which bookies hold which entries."""
    service = _service(request)
    name = TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")
    if not await service.topic_exists(name):
        raise ResourceNotFoundError(f"topic {name} does not exist")
    loaded = await service.get_topic(name, create=False)
    infos = loaded.ledger.internal_stats()["ledgers"]
    ledgers = []
    for info in infos[-MAX_LEDGERS:]:
        try:
            md = await service.factory.ledgers.get_metadata(info["ledgerId"])
        except NoSuchLedgerError:  # deleted meanwhile (trimmed)
            continue
        ledgers.append({
            **info,
            "state": md.state.name,
            "ensembleSize": len(md.ensemble),
            "writeQuorum": md.write_quorum,
            "ackQuorum": md.ack_quorum,
            "ensembles": [{"firstEntry": first, "bookies": bookies} for first, bookies in md.ensembles],
        })
    return {"topic": str(name), "ledgerCount": len(infos), "ledgers": ledgers}
