"""Broker registration and load reports: one ephemeral node per live broker, as Pulsar's
/loadbalance/brokers/<host:web-port>, holding its service URLs and its latest load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from taureau.common.errors import MetadataError
from taureau.metadata.store import MetadataStore

BROKERS = "/loadbalance/brokers"
MAX_REPORTED_BUNDLES = 1000  # the hottest bundles in a load report (a node holds 1 MiB)


class BrokerRecordError(MetadataError):
    """A registration node that is not a broker record (written by something else)."""


@dataclass(frozen=True, slots=True)
class BrokerUrls:
    """Where a broker serves: what lookups and redirects hand out. Empty when not served."""

    broker_id: str  # host:web-port, the name of its registration node
    pulsar: str = ""
    pulsar_tls: str = ""
    web: str = ""
    web_tls: str = ""


@dataclass(frozen=True, slots=True)
class BrokerLoad:
    """What the load manager compares (docs/cluster.md): fewer bundles first, then fewer
    topics, then the lower message rate."""

    bundles: int = 0
    topics: int = 0
    msg_rate: float = 0.0

    def key(self) -> tuple[int, int, float]:
        return (self.bundles, self.topics, self.msg_rate)


@dataclass(frozen=True, slots=True)
class BundleStats:
    """One bundle's share of its owner's load: what shedding and auto split compare."""

    msg_rate: float = 0.0  # messages in + out per second, summed over its loaded topics
    topics: int = 0


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    urls: BrokerUrls
    load: BrokerLoad = field(default_factory=BrokerLoad)
    # Owned bundles by name (`tenant/ns/0x..._0x...`), the hottest MAX_REPORTED_BUNDLES.
    bundles: dict[str, BundleStats] = field(default_factory=dict)

    def encode(self) -> bytes:
        urls = self.urls
        return json.dumps({
            "brokerId": urls.broker_id,
            # Pulsar's field names for the URLs, so its tools read them as they would there.
            "pulsarServiceUrl": urls.pulsar, "pulsarServiceUrlTls": urls.pulsar_tls,
            "webServiceUrl": urls.web, "webServiceUrlTls": urls.web_tls,
            "load": asdict(self.load),
            "bundleStats": {name: {"msgRate": st.msg_rate, "topics": st.topics}
                            for name, st in self.bundles.items()},
        }).encode()

    @classmethod
    def decode(cls, broker_id: str, raw: bytes) -> BrokerRecord:
        try:
            data = json.loads(raw)
            urls = BrokerUrls(str(data.get("brokerId") or broker_id), str(data["pulsarServiceUrl"]), str(data["pulsarServiceUrlTls"]),
                              str(data["webServiceUrl"]), str(data["webServiceUrlTls"]))
            load = data.get("load") or {}
            stats = {str(name): BundleStats(float(st.get("msgRate", 0.0)), int(st.get("topics", 0)))
                     for name, st in (data.get("bundleStats") or {}).items()}
            return cls(urls, BrokerLoad(int(load.get("bundles", 0)), int(load.get("topics", 0)),
                                        float(load.get("msg_rate", 0.0))), stats)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BrokerRecordError(f"{BROKERS}/{broker_id} does not hold a broker record") from None


def broker_path(broker_id: str) -> str:
    return f"{BROKERS}/{broker_id}"


async def live_brokers(store: MetadataStore) -> list[BrokerRecord]:
    """Every registered broker, by id; a node gone between listing and reading is skipped."""
    found = []
    for broker_id in await store.children(BROKERS):
        got = await store.get(broker_path(broker_id))
        if got is not None:
            try:
                found.append(BrokerRecord.decode(broker_id, got[0]))
            except BrokerRecordError:
                continue  # not a broker: never a placement candidate
    return found


def hottest(stats: dict[str, BundleStats], limit: int = MAX_REPORTED_BUNDLES) -> dict[str, BundleStats]:
    """The `limit` bundles with the highest message rate (ties by name), for a bounded report."""
    if len(stats) <= limit:
        return stats
    return dict(sorted(stats.items(), key=lambda item: (-item[1].msg_rate, item[0]))[:limit])
