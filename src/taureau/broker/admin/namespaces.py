"""/admin/v2/namespaces: namespaces and their retention, auto-creation, dedup and schema policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin.replication import check_replication_clusters
from taureau.broker.resources import (
    BACKLOG_QUOTA_TYPES,
    AutoTopicCreation,
    NamespacePolicies,
    RetentionPolicies,
    _build,
    _non_negative_int,
    check_partition_count,
    parse_backlog_quota,
)
from taureau.broker.schemas.compatibility import Strategy
from taureau.common.names import NamespaceName

router = APIRouter(prefix="/admin/v2/namespaces", tags=["namespaces"])


def _service(request: Request):
    return request.app.state.service


def _object(body: Any, what: str) -> dict:
    if not isinstance(body, dict):
        raise ValueError(f"{what} must be a JSON object")
    return body


@router.get("/{tenant}")
async def list_namespaces(request: Request, tenant: str) -> list[str]:
    return await _service(request).resources.list_namespaces(tenant)


@router.get("/{tenant}/{namespace}")
async def get_policies(request: Request, tenant: str, namespace: str) -> dict:
    policies = await _service(request).resources.get_policies(NamespaceName.parse(f"{tenant}/{namespace}"))
    return policies.to_json()


@router.put("/{tenant}/{namespace}", status_code=204)
async def create_namespace(request: Request, tenant: str, namespace: str, body: Any = Body(None)) -> Response:
    policies = NamespacePolicies.from_json(_object(body, "policies")) if body is not None else None
    if policies is not None and policies.replication_clusters:  # as set-clusters checks them
        await check_replication_clusters(_service(request), tenant, policies.replication_clusters)
    await _service(request).resources.create_namespace(NamespaceName.parse(f"{tenant}/{namespace}"), policies)
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}", status_code=204)
async def delete_namespace(request: Request, tenant: str, namespace: str) -> Response:
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    if await service.list_topics(ns) or await service.resources.list_partitioned_topics(ns):
        from taureau.broker.resources import PreconditionFailedError

        raise PreconditionFailedError(f"namespace {ns} still has topics")
    await service.resources.delete_namespace(ns)
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/topics")
async def namespace_topics(request: Request, tenant: str, namespace: str) -> list[str]:
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.get_policies(ns)
    return await service.topics_of_namespace(ns)


async def set_policy(request: Request, tenant: str, namespace: str, field: str, value: Any) -> Response:
    """Set one field of the namespace's policies (compare-and-set) and push it to its topics."""
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.update_policies(ns, lambda policies: setattr(policies, field, value))
    await service.apply_policies(ns)
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/retention")
async def get_retention(request: Request, tenant: str, namespace: str) -> dict:
    return (await get_policies(request, tenant, namespace))["retention_policies"]


@router.post("/{tenant}/{namespace}/retention", status_code=204)
async def set_retention(request: Request, tenant: str, namespace: str, body: Any = Body(...)) -> Response:
    retention = _build(RetentionPolicies, _object(body, "retention"))
    if retention.retentionTimeInMinutes < -1 or retention.retentionSizeInMB < -1:
        raise ValueError("retention values must be >= -1 (-1 keeps forever)")
    return await set_policy(request, tenant, namespace, "retention_policies", retention)


@router.delete("/{tenant}/{namespace}/retention", status_code=204)
async def remove_retention(request: Request, tenant: str, namespace: str) -> Response:
    return await set_policy(request, tenant, namespace, "retention_policies", RetentionPolicies())


@router.get("/{tenant}/{namespace}/autoTopicCreation")
async def get_auto_topic_creation(request: Request, tenant: str, namespace: str) -> dict:
    return (await get_policies(request, tenant, namespace))["autoTopicCreationOverride"]


@router.post("/{tenant}/{namespace}/autoTopicCreation", status_code=204)
async def set_auto_topic_creation(
    request: Request, tenant: str, namespace: str, body: Any = Body(...)
) -> Response:
    auto = _build(AutoTopicCreation, _object(body, "autoTopicCreation"))
    if auto.topicType not in ("non-partitioned", "partitioned"):
        raise ValueError("topicType must be 'non-partitioned' or 'partitioned'")
    if auto.defaultNumPartitions < 1:
        raise ValueError("defaultNumPartitions must be >= 1")
    if auto.topicType == "partitioned":
        check_partition_count(auto.defaultNumPartitions, _service(request).resources.max_partitions)
    return await set_policy(request, tenant, namespace, "autoTopicCreationOverride", auto)


@router.delete("/{tenant}/{namespace}/autoTopicCreation", status_code=204)
async def remove_auto_topic_creation(request: Request, tenant: str, namespace: str) -> Response:
    return await set_policy(request, tenant, namespace, "autoTopicCreationOverride", AutoTopicCreation())


@router.get("/{tenant}/{namespace}/deduplication")
async def get_deduplication(request: Request, tenant: str, namespace: str) -> bool:
    return (await get_policies(request, tenant, namespace))["deduplicationEnabled"]


@router.post("/{tenant}/{namespace}/deduplication", status_code=204)
async def set_deduplication(request: Request, tenant: str, namespace: str, body: Any = Body(...)) -> Response:
    if not isinstance(body, bool):
        raise ValueError("deduplication body must be true or false")
    return await set_policy(request, tenant, namespace, "deduplicationEnabled", body)


# -- schema policies --------------------------------------------------------------------------


@router.get("/{tenant}/{namespace}/schemaCompatibilityStrategy")
async def get_schema_compatibility_strategy(request: Request, tenant: str, namespace: str) -> str:
    return (await get_policies(request, tenant, namespace))["schema_compatibility_strategy"]


@router.post("/{tenant}/{namespace}/schemaCompatibilityStrategy", status_code=204)
@router.put("/{tenant}/{namespace}/schemaCompatibilityStrategy", status_code=204)
async def set_schema_compatibility_strategy(
    request: Request, tenant: str, namespace: str, body: Any = Body(...)
) -> Response:
    strategy = Strategy.parse(body).value if isinstance(body, str) else _not_a_strategy(body)
    return await set_policy(request, tenant, namespace, "schema_compatibility_strategy", strategy)


def _not_a_strategy(body: Any) -> str:
    raise ValueError(f"the body must be a strategy name as a JSON string, got {body!r}")


def _flag_routes(path: str, field: str) -> None:
    """GET and POST of one boolean namespace policy."""

    async def get_flag(request: Request, tenant: str, namespace: str) -> bool:
        return (await get_policies(request, tenant, namespace))[field]

    async def set_flag(request: Request, tenant: str, namespace: str, body: Any = Body(...)) -> Response:
        if not isinstance(body, bool):
            raise ValueError(f"{field} must be true or false")
        return await set_policy(request, tenant, namespace, field, body)

    router.add_api_route(f"/{{tenant}}/{{namespace}}/{path}", get_flag, methods=["GET"], name=f"get_{field}")
    router.add_api_route(f"/{{tenant}}/{{namespace}}/{path}", set_flag, methods=["POST"], status_code=204,
                         name=f"set_{field}")


_flag_routes("schemaValidationEnforced", "schema_validation_enforced")
_flag_routes("isAllowAutoUpdateSchema", "is_allow_auto_update_schema")


# -- compaction -------------------------------------------------------------------------------


def count_routes(
    target: APIRouter, path: str, field: str, parse: Callable[[Any, str], Any], removed: Any
) -> None:
    """GET, set (PUT or POST, the body checked by `parse`) and DELETE (back to `removed`) of one
    namespace policy (an integer, or a JSON object `parse` builds)."""

    async def get_count(request: Request, tenant: str, namespace: str) -> Any:
        return (await get_policies(request, tenant, namespace))[field]

    async def set_count(request: Request, tenant: str, namespace: str, body: Any = Body(...)) -> Response:
        return await set_policy(request, tenant, namespace, field, parse(body, path))

    async def remove_count(request: Request, tenant: str, namespace: str) -> Response:
        return await set_policy(request, tenant, namespace, field, removed)

    route = f"/{{tenant}}/{{namespace}}/{path}"
    target.add_api_route(route, get_count, methods=["GET"], name=f"get_{field}")
    target.add_api_route(route, set_count, methods=["PUT", "POST"], status_code=204, name=f"set_{field}")
    target.add_api_route(route, remove_count, methods=["DELETE"], status_code=204, name=f"remove_{field}")


count_routes(router, "compactionThreshold", "compaction_threshold", _non_negative_int, 0)
count_routes(router, "messageTTL", "message_ttl_in_seconds", _non_negative_int, 0)


# -- message TTL and backlog quotas -----------------------------------------------------------


def _quota_type(backlogQuotaType: str) -> str:  # noqa: N803 - Pulsar's query parameter
    if backlogQuotaType not in BACKLOG_QUOTA_TYPES:
        raise ValueError(f"backlogQuotaType must be one of {', '.join(BACKLOG_QUOTA_TYPES)}")
    return backlogQuotaType


@router.get("/{tenant}/{namespace}/backlogQuotaMap")
async def get_backlog_quota_map(request: Request, tenant: str, namespace: str) -> dict:
    return (await get_policies(request, tenant, namespace))["backlog_quota_map"]


@router.post("/{tenant}/{namespace}/backlogQuota", status_code=204)
async def set_backlog_quota(request: Request, tenant: str, namespace: str, body: Any = Body(...),
                            backlogQuotaType: str = "destination_storage") -> Response:  # noqa: N803
    kind = _quota_type(backlogQuotaType)
    quota = parse_backlog_quota(body, kind)
    service = _service(request)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await service.resources.update_policies(ns, lambda p: p.backlog_quota_map.__setitem__(kind, quota))
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/backlogQuota", status_code=204)
async def remove_backlog_quota(request: Request, tenant: str, namespace: str,
                               backlogQuotaType: str = "destination_storage") -> Response:  # noqa: N803
    kind = _quota_type(backlogQuotaType)
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await _service(request).resources.update_policies(ns, lambda p: p.backlog_quota_map.pop(kind, None))
    return Response(status_code=204)
