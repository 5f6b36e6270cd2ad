"""Persistence policies on Pulsar's REST paths: .../namespaces/{t}/{ns}/persistence and
.../persistent/{t}/{ns}/{topic}/persistence (GET, POST, DELETE; broker/persistence.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.admin.namespaces import get_policies, set_policy
from taureau.broker.persistence import TOPIC_PERSISTENCE, PersistencePolicies
from taureau.broker.resources import PreconditionFailedError
from taureau.common.names import TopicName

namespaces = APIRouter(prefix="/admin/v2/namespaces", tags=["namespaces"])
topics = APIRouter(prefix="/admin/v2/persistent", tags=["topics"])

_NAMESPACE = "/{tenant}/{namespace}/persistence"
_TOPIC = "/{tenant}/{namespace}/{topic}/persistence"


async def _checked(request: Request, body: Any) -> PersistencePolicies:
    """The body as Pulsar checks it (400), then against the bookies there are now (412): an
    ensemble no ledger could get is refused before anything is stored."""
    policies = PersistencePolicies.from_json(body)
    available = await request.app.state.service.factory.ledgers.available_bookies()
    if policies.bookkeeperEnsemble > available:
        raise PreconditionFailedError(f"Bookkeeper-Ensemble {policies.bookkeeperEnsemble} is larger than "
                                      f"the {available} bookie(s) available")
    return policies


@namespaces.get(_NAMESPACE)
async def get_namespace_persistence(request: Request, tenant: str, namespace: str) -> dict | None:
    return (await get_policies(request, tenant, namespace))["persistence"]


@namespaces.post(_NAMESPACE, status_code=204)
async def set_namespace_persistence(request: Request, tenant: str, namespace: str,
                                    body: Any = Body(...)) -> Response:
    return await set_policy(request, tenant, namespace, "persistence", await _checked(request, body))


@namespaces.delete(_NAMESPACE, status_code=204)
async def remove_namespace_persistence(request: Request, tenant: str, namespace: str) -> Response:
    return await set_policy(request, tenant, namespace, "persistence", None)


def _topic(tenant: str, namespace: str, topic: str) -> TopicName:
    return TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")


@topics.get(_TOPIC)
async def get_topic_persistence(request: Request, tenant: str, namespace: str, topic: str) -> dict | None:
    return await request.app.state.service.resources.get_topic_policy(_topic(tenant, namespace, topic),
                                                                       TOPIC_PERSISTENCE)


async def _store(request: Request, name: TopicName, value: dict | None) -> Response:
    service = request.app.state.service
    await service.resources.get_policies(name.namespace_name)  # 404 for an unknown namespace
    await service.resources.set_topic_policy(name, TOPIC_PERSISTENCE, value)
    await service.apply_topic_policies(name)
    return Response(status_code=204)


@topics.post(_TOPIC, status_code=204)
async def set_topic_persistence(request: Request, tenant: str, namespace: str, topic: str,
                                body: Any = Body(...)) -> Response:
    policies = await _checked(request, body)
    return await _store(request, _topic(tenant, namespace, topic), policies.to_json())


@topics.delete(_TOPIC, status_code=204)
async def remove_topic_persistence(request: Request, tenant: str, namespace: str, topic: str) -> Response:
    return await _store(request, _topic(tenant, namespace, topic), None)
