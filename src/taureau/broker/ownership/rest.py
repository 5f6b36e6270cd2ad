"""The admin API of ownership: 307 redirects of topic calls to the topic's owner (as Pulsar's
brokers answer), `namespaces bundles`, `namespaces unload` (whole or one bundle, optionally
naming the broker that takes it) and `namespaces split-bundle`; `brokers list` is in
admin/cluster.py."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, unquote

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from taureau.broker.ownership.api import Ownership
from taureau.broker.ownership.bundles import Bundle, parse_range
from taureau.broker.ownership.registry import BrokerUrls
from taureau.broker.resources import PreconditionFailedError
from taureau.common.errors import (
    InvalidTopicNameError,
    NotAllowedError,
    ServiceNotReadyError,
    TaureauError,
    TopicNotFoundError,
)
from taureau.common.names import NamespaceName, TopicName

router = APIRouter()
FORWARD_TIMEOUT_S = 10.0  # an unload forwarded to another broker
SPLIT_ALGORITHM = "range_equally_divide"  # Pulsar's default, the only one here


def _ownership(request: Request) -> Ownership:
    return request.app.state.service.ownership


@router.get("/admin/v2/namespaces/{tenant}/{namespace}/bundles")
async def bundles(request: Request, tenant: str, namespace: str) -> dict:
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await request.app.state.service.resources.get_policies(ns)  # 404 for a namespace that is not
    found = await _ownership(request).bundles(ns)
    edges = [f"0x{b.lower:08x}" for b in found] + [f"0x{found[-1].upper:08x}"]
    return {"boundaries": edges, "numBundles": len(found)}


@router.put("/admin/v2/namespaces/{tenant}/{namespace}/unload", status_code=204)
async def unload_namespace(request: Request, tenant: str, namespace: str) -> None:
    """Every bundle let go by its owner: this broker's here, the others' at their owner."""
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await request.app.state.service.resources.get_policies(ns)
    ownership = _ownership(request)
    for bundle in await ownership.bundles(ns):
        owner, owned = await ownership.bundle_owner(bundle)
        if owned and owner is None:
            await ownership.unload(bundle)
        elif owner is not None:
            await _forward_unload(request, owner, f"/admin/v2/namespaces/{ns}/{bundle.range}/unload")


@router.put("/admin/v2/namespaces/{tenant}/{namespace}/{bundle}/unload", status_code=204, response_model=None)
async def unload_bundle(request: Request, tenant: str, namespace: str, bundle: str,
                        destinationBroker: str | None = None) -> Response | None:  # noqa: N803 (Pulsar's name)
    """One bundle let go; `destinationBroker` (a broker id, as `brokers list` shows) is where
    its next lookup places it while that broker is alive."""
    wanted = await _bundle_of(request, tenant, namespace, bundle)
    ownership = _ownership(request)
    if destinationBroker is not None and destinationBroker not in {
            r.urls.broker_id for r in await ownership.brokers()}:
        raise PreconditionFailedError(f"destinationBroker {destinationBroker} is not a live broker")
    owner, owned = await ownership.bundle_owner(wanted)
    if owner is not None:
        return _redirect(request, owner)
    if owned:
        await ownership.unload(wanted, destinationBroker)
    return None


@router.put("/admin/v2/namespaces/{tenant}/{namespace}/{bundle}/split", status_code=204, response_model=None)
async def split_bundle(request: Request, tenant: str, namespace: str, bundle: str, unload: bool = False,
                       splitAlgorithmName: str = SPLIT_ALGORITHM) -> Response | None:  # noqa: N803
    """Cut one bundle in two at the middle of its range (range_equally_divide), at its owner
    (an unowned bundle is taken by this broker first). Its topics are closed either way
    (`unload` is accepted for pulsar-admin; the halves are placed by their next lookup)."""
    if splitAlgorithmName != SPLIT_ALGORITHM:
        raise PreconditionFailedError(f"split algorithm {splitAlgorithmName!r} is not supported: "
                                      f"only {SPLIT_ALGORITHM}")
    wanted = await _bundle_of(request, tenant, namespace, bundle)
    ownership = _ownership(request)
    owner, _owned = await ownership.bundle_owner(wanted)
    if owner is not None:
        return _redirect(request, owner)
    await ownership.split(wanted, request.app.state.service.config.load_balancer.max_bundles)
    return None


async def _bundle_of(request: Request, tenant: str, namespace: str, text: str) -> Bundle:
    """The namespace's bundle named `text`: 404 for a namespace or a bundle that is not,
    400 for a range that does not parse."""
    ns = NamespaceName.parse(f"{tenant}/{namespace}")
    await request.app.state.service.resources.get_policies(ns)
    try:
        wanted = parse_range(ns, text)
    except NotAllowedError as exc:
        raise ValueError(str(exc)) from None
    if wanted not in await _ownership(request).bundles(ns):
        raise TopicNotFoundError(f"namespace {ns} has no bundle {text}")
    return wanted


async def _forward_unload(request: Request, owner: BrokerUrls, path: str) -> None:
    await _call_at(request, owner, "PUT", path, {})


async def _call_at(request: Request, owner: BrokerUrls, method: str, path: str, params: dict[str, str]) -> Any:
    """`method path` at `owner`, with the caller's credentials: its JSON body (True for an
    empty one); ServiceNotReadyError if it fails."""
    headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
    async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as client:
        answer = await client.request(method, _web_base(owner, request.url.scheme) + path, params=params,
                                      headers=headers)
    if answer.status_code >= 300:
        raise ServiceNotReadyError(f"broker {owner.broker_id} answered {method} {path} with HTTP "
                                   f"{answer.status_code}: {answer.text[:200]}")
    return answer.json() if answer.content else True


def _redirect(request: Request, owner: BrokerUrls) -> Response:
    return Response(status_code=307, headers={"Location": _location(owner, request.url.scheme,
                                                                    request.url.path, request.url.query)})


async def at_owner(request: Request, partition: TopicName, method: str, suffix: str = "",
                   params: dict[str, str] | None = None) -> Any | None:
    """For a call on a partitioned topic as a whole, one partition's part: None when this
    broker serves the partition (the caller acts here), else the same call on the partition
    made at its owner (authoritative, with the caller's credentials), answered with its JSON
    body (True for an empty one). ServiceNotReadyError if the owner fails it."""
    owner = await request.app.state.service.ownership.owner_of(partition)
    if owner is None:
        return None
    path = f"/admin/v2/{partition.domain}/{partition.tenant}/{partition.namespace}/{_local(partition)}{suffix}"
    return await _call_at(request, owner, method, path, {**(params or {}), "authoritative": "true"})


def _local(partition: TopicName) -> str:
    return quote(str(partition).rsplit("/", 1)[1], safe="")


def _web_base(owner: BrokerUrls, scheme: str) -> str:
    """The owner's admin URL of the caller's scheme, else the one it has."""
    return owner.web_tls if (scheme == "https" and owner.web_tls) or not owner.web else owner.web


def _location(owner: BrokerUrls, scheme: str, path: str, query: str) -> str:
    """The same call at the owner, authoritative: it takes the bundle itself if nobody has it."""
    base = _web_base(owner, scheme)
    params = [p for p in query.split("&") if p and not p.startswith("authoritative=")]
    return f"{base}{path}?{'&'.join([*params, 'authoritative=true'])}"


class RedirectToOwner:
    """Topic calls (`/admin/v2/persistent/<tenant>/<namespace>/<topic>/...`) for a topic of
    another broker's bundle: 307 to the same call at the owner. Calls on a partitioned topic
    as a whole are not redirected (its partitions may be on several brokers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = _topic_of(scope) if scope["type"] == "http" else None
        if name is not None:
            query = scope.get("query_string", b"").decode("latin-1")
            authoritative = parse_qs(query).get("authoritative", ["false"])[-1].lower() == "true"
            service = scope["app"].state.service
            try:
                owner = await service.ownership.owner_of(name, authoritative)
                if owner is not None and await service.resources.get_partitions(name):
                    owner = None  # a partitioned topic as a whole: answered here
            except TaureauError as exc:
                owner = None
                if isinstance(exc, ServiceNotReadyError):
                    await JSONResponse({"reason": str(exc)}, status_code=503)(scope, receive, send)
                    return
            if owner is not None:
                location = _location(owner, scope.get("scheme", "http"), scope["path"], query)
                await Response(status_code=307, headers={"Location": location})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _topic_of(scope: Scope) -> TopicName | None:
    parts = [unquote(p) for p in scope["path"].strip("/").split("/")]
    if len(parts) < 6 or parts[:2] != ["admin", "v2"] or parts[2] not in ("persistent", "non-persistent"):
        return None
    try:
        return TopicName.parse(f"{parts[2]}://{parts[3]}/{parts[4]}/{parts[5]}")
    except InvalidTopicNameError:
        return None
