"""HTTP lookup (/lookup/v2/topic/...): what clients given an http:// service URL ask before
they open a binary connection to the broker (the cluster list is admin/replication.py's)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request

from taureau.broker.service import BrokerService
from taureau.common.names import TopicName

router = APIRouter()


def _service(request: Request) -> BrokerService:
    return request.app.state.service


@router.get("/lookup/v2/topic/{domain}/{tenant}/{namespace}/{topic}")
async def lookup(
    request: Request,
    domain: str,
    tenant: str,
    namespace: str,
    topic: str,
    listenerName: str | None = None,  # noqa: N803 - Pulsar's query parameter
    authoritative: bool = False,
    x_pulsar_listenername: str | None = Header(default=None),
) -> dict:
    """Where the topic is served, as Pulsar's LookupData; a listener (query or header) picks
    the broker URL of that advertised listener, as a binary LOOKUP does."""
    service = _service(request)
    name = TopicName.parse(f"{domain}://{tenant}/{namespace}/{topic}")
    config = service.config
    await service.resources.get_policies(name.namespace_name)
    owner = await service.ownership.owner_of(name, authoritative)
    if owner is not None:  # served by another broker: its URLs (it takes the bundle if not yet)
        return {"brokerUrl": owner.pulsar, "brokerUrlTls": owner.pulsar_tls, "httpUrl": owner.web,
                "httpUrlTls": owner.web_tls, "nativeUrl": owner.pulsar}
    url = config.listener_url(listenerName or x_pulsar_listenername or "")
    return {
        "brokerUrl": url,
        "brokerUrlTls": "",
        "httpUrl": config.web_service_url,
        "httpUrlTls": "",
        "nativeUrl": url,
    }
