"""Geo-replication's admin REST: Pulsar's /admin/v2/clusters (the registered clusters) and a
namespace's replication clusters (/admin/v2/namespaces/{tenant}/{ns}/replication)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.replication.clusters import UnknownReplicationClusterError, parse_cluster_data
from taureau.broker.resources import TOPIC_REPLICATION, PreconditionFailedError, check_cluster_list
from taureau.broker.service import BrokerService
from taureau.common.names import NamespaceName, TopicName

router = APIRouter(tags=["clusters"])

MAX_NAMESPACES_CHECKED = 10_000  # walked to refuse deleting a cluster still replicated to


def _service(request: Request) -> BrokerService:
    return request.app.state.service


@router.get("/admin/v2/clusters")
async def list_clusters(request: Request) -> list[str]:
    return await _service(request).clusters.names()


@router.get("/admin/v2/clusters/{cluster}")
async def get_cluster(request: Request, cluster: str) -> dict:
    return (await _service(request).clusters.get(cluster)).to_json()


@router.put("/admin/v2/clusters/{cluster}", status_code=204)
async def create_cluster(request: Request, cluster: str, body: Any = Body(None)) -> Response:
    await _service(request).clusters.create(cluster, parse_cluster_data(body))
    return Response(status_code=204)


@router.post("/admin/v2/clusters/{cluster}", status_code=204)
async def update_cluster(request: Request, cluster: str, body: Any = Body(None)) -> Response:
    await _service(request).clusters.update(cluster, parse_cluster_data(body))
    return Response(status_code=204)


@router.delete("/admin/v2/clusters/{cluster}", status_code=204)
async def delete_cluster(request: Request, cluster: str) -> Response:
    service = _service(request)
    await service.clusters.delete(cluster, await _replicating_namespaces(service, cluster))
    return Response(status_code=204)


async def _replicating_namespaces(service: BrokerService, cluster: str) -> list[str]:
    found: list[str] = []
    seen = 0
    for tenant in await service.resources.list_tenants():
        for ns in await service.resources.list_namespaces(tenant):
            seen += 1
            if seen > MAX_NAMESPACES_CHECKED:
                return found
            policies = await service.resources.get_policies(NamespaceName.parse(ns))
            if cluster in policies.replication_clusters:
                found.append(ns)
    return found


async def check_replication_clusters(service: BrokerService, tenant: str, clusters: list[str]) -> None:
    """Pulsar's checks of `set-clusters`: each cluster registered (403 "Invalid cluster id"
    otherwise) and allowed for the tenant (403)."""
    if not clusters:
        raise PreconditionFailedError("ClusterIds should not be null or empty")
    known = set(await service.clusters.names())
    allowed = set((await service.resources.get_tenant(tenant)).allowedClusters)
    for cluster in clusters:
        if cluster not in known:
            raise UnknownReplicationClusterError(f"Invalid cluster id: {cluster}")
        if cluster not in allowed:
            raise UnknownReplicationClusterError(
                f"Cluster {cluster} is not in the list of allowed clusters list for tenant [{tenant}]")


@router.get("/admin/v2/namespaces/{tenant}/{namespace}/replication")
async def get_replication_clusters(request: Request, tenant: str, namespace: str) -> list[str]:
    """The namespace's replication clusters; the local cluster alone when none were set."""
    service = _service(request)
    policies = await service.resources.get_policies(NamespaceName.parse(f"{tenant}/{namespace}"))
    return policies.replication_clusters or [service.config.cluster_name]


@router.post("/admin/v2/namespaces/{tenant}/{namespace}/replication", status_code=204)
async def set_replication_clusters(request: Request, tenant: str, namespace: str, body: Any = Body(None)) -> Response:
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    clusters = await _checked_clusters(service, ns, body)
    await service.resources.update_policies(ns, lambda policies: setattr(policies, "replication_clusters", clusters))
    await service.apply_policies(ns)
    return Response(status_code=204)


async def _checked_clusters(service: BrokerService, ns: NamespaceName, body: Any) -> list[str]:
    clusters = check_cluster_list(body)
    await service.resources.get_policies(ns)  # 404 for a missing namespace before the cluster checks
    await check_replication_clusters(service, ns.tenant, clusters)
    return clusters


# -- a topic's own replication clusters (win over its namespace's; a partition takes its topic's)

_TOPIC = "/admin/v2/persistent/{tenant}/{namespace}/{topic}/replication"


def _topic_name(tenant: str, namespace: str, topic: str) -> TopicName:
    return TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")


@router.get(_TOPIC)
async def get_topic_replication_clusters(request: Request, tenant: str, namespace: str, topic: str) -> list[str] | None:
    """The topic's own replication clusters; null when it has none (its namespace's apply)."""
    return await _service(request).resources.get_topic_policy(_topic_name(tenant, namespace, topic), TOPIC_REPLICATION)


@router.post(_TOPIC, status_code=204)
async def set_topic_replication_clusters(request: Request, tenant: str, namespace: str, topic: str,
                                         body: Any = Body(None)) -> Response:
    service = _service(request)
    name = _topic_name(tenant, namespace, topic)
    clusters = await _checked_clusters(service, name.namespace_name, body)
    return await _store_topic_clusters(service, name, clusters)


@router.delete(_TOPIC, status_code=204)
async def remove_topic_replication_clusters(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    service = _service(request)
    name = _topic_name(tenant, namespace, topic)
    await service.resources.get_policies(name.namespace_name)
    return await _store_topic_clusters(service, name, None)


async def _store_topic_clusters(service: BrokerService, name: TopicName, clusters: list[str] | None) -> Response:
    await service.resources.set_topic_policy(name, TOPIC_REPLICATION, clusters)
    await service.apply_topic_policies(name)
    return Response(status_code=204)
