"""The clusters a broker knows, as Pulsar's ClusterData records under /admin/clusters/<name>.

`taureau initialize-cluster-metadata` writes the first record of a cluster mode store; a broker
writes its own cluster's record at start when none exists, so `clusters list` always shows the
local cluster and a namespace may name it among its replication clusters.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from taureau.common.errors import BrokerError, InvalidTopicNameError, NodeExistsError, NotFoundError
from taureau.common.names import check_name_part
from taureau.metadata.store import MetadataStore

CLUSTERS = "/admin/clusters"

# Pulsar's ClusterData fields Taureau stores and uses; pulsar-admin sends the others as null.
_FIELDS = ("serviceUrl", "serviceUrlTls", "brokerServiceUrl", "brokerServiceUrlTls")
_HOST = re.compile(r"[A-Za-z0-9.\-]+|[0-9A-Fa-f:.]+")  # a name, an IPv4 or an IPv6 address


class ClusterConflictError(BrokerError):
    """The cluster exists already (REST 409)."""


class ClusterNotFoundError(BrokerError):
    """No such cluster (REST 404)."""


class ClusterInUseError(BrokerError):
    """The cluster is the local one, or a namespace replicates to it (REST 412)."""


class UnknownReplicationClusterError(BrokerError):
    """A replication cluster that is not registered, or not allowed for the tenant (REST 403,
    as Pulsar answers `set-clusters` with an invalid cluster id)."""


@dataclass(frozen=True, slots=True)
class ClusterData:
    serviceUrl: str = ""  # noqa: N815 - Pulsar's JSON field names
    serviceUrlTls: str = ""  # noqa: N815
    brokerServiceUrl: str = ""  # noqa: N815
    brokerServiceUrlTls: str = ""  # noqa: N815

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def _check_url(value: Any, name: str, schemes: tuple[str, ...]) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a valid URL") from None
    host = parts.hostname
    if parts.scheme not in schemes or not host or not _HOST.fullmatch(host) or parts.username is not None:
        raise ValueError(f"{name} {value!r} is not a {' or '.join(s + '://host:port' for s in schemes)} URL")
    if parts.query or parts.fragment or (parts.path not in ("", "/") and schemes[0] == "pulsar"):
        raise ValueError(f"{name} {value!r} must name only a host and port")
    return value


def parse_cluster_data(data: Any) -> ClusterData:
    """Pulsar's ClusterData JSON, checked: URLs must parse; fields Taureau does not use may be
    given only as null (what pulsar-admin sends for them)."""
    if not isinstance(data, dict):
        raise ValueError("cluster data must be a JSON object")
    unused = sorted(k for k, v in data.items() if k not in _FIELDS and v not in (None, False, "", [], {}))
    if unused:
        raise ValueError(f"unsupported cluster field(s) {unused}; supported: {', '.join(_FIELDS)}")
    cluster = ClusterData(
        serviceUrl=_check_url(data.get("serviceUrl"), "serviceUrl", ("http",)),
        serviceUrlTls=_check_url(data.get("serviceUrlTls"), "serviceUrlTls", ("https",)),
        brokerServiceUrl=_check_url(data.get("brokerServiceUrl"), "brokerServiceUrl", ("pulsar",)),
        brokerServiceUrlTls=_check_url(data.get("brokerServiceUrlTls"), "brokerServiceUrlTls", ("pulsar+ssl",)),
    )
    if not cluster.serviceUrl and not cluster.serviceUrlTls:
        raise ValueError("a cluster needs serviceUrl (http://host:port) or serviceUrlTls")
    return cluster


def _decode(raw: bytes) -> ClusterData:
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    # Written by this module or initialize-cluster-metadata: take the known fields as stored.
    return ClusterData(**{k: str(data.get(k) or "") for k in _FIELDS})


class ClusterRegistry:
    """Reads and writes cluster records; owns no state (the store is the truth)."""

    def __init__(self, store: MetadataStore, local: str) -> None:
        self.store = store
        self.local = local

    async def register_local(self, data: ClusterData) -> None:
        """Write the local cluster's record unless one exists (first start of a broker)."""
        try:
            await self.store.put(f"{CLUSTERS}/{self.local}", json.dumps(data.to_json()).encode(), -1)
        except NodeExistsError:
            pass

    async def names(self) -> list[str]:
        return sorted(await self.store.children(CLUSTERS))

    async def get(self, name: str) -> ClusterData:
        found = await self.store.get(f"{CLUSTERS}/{_name(name)}")
        if found is None:
            raise ClusterNotFoundError(f"cluster {name} does not exist")
        return _decode(found[0])

    async def find(self, name: str) -> ClusterData | None:
        try:
            return await self.get(name)
        except (ClusterNotFoundError, InvalidTopicNameError):
            return None

    async def create(self, name: str, data: ClusterData) -> None:
        try:
            await self.store.put(f"{CLUSTERS}/{_name(name)}", json.dumps(data.to_json()).encode(), -1)
        except NodeExistsError:
            raise ClusterConflictError(f"cluster {name} already exists") from None

    async def update(self, name: str, data: ClusterData) -> None:
        await self.get(name)
        await self.store.put(f"{CLUSTERS}/{name}", json.dumps(data.to_json()).encode())

    async def delete(self, name: str, replicating_namespaces: list[str]) -> None:
        """Delete a remote cluster's record; refused for the local cluster and for one that
        namespaces still replicate to (their replicators would lose its URL)."""
        await self.get(name)
        if name == self.local:
            raise ClusterInUseError(f"cluster {name} is this broker's own cluster")
        if replicating_namespaces:
            shown = ", ".join(replicating_namespaces[:5])
            raise ClusterInUseError(f"cluster {name} is a replication cluster of namespace(s) {shown}")
        try:
            await self.store.delete(f"{CLUSTERS}/{name}")
        except NotFoundError:
            raise ClusterNotFoundError(f"cluster {name} does not exist") from None


def _name(name: str) -> str:
    return check_name_part("cluster", name)
