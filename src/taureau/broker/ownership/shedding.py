"""The load manager's decisions, pure: which bundles an overloaded broker sheds (Pulsar's
ThresholdShedder idea) and which bundles are split for being too hot or too large.

Load is the message rate (in + out per second) each broker and bundle report
(registry.BrokerRecord), not Pulsar's mix of CPU, memory and bandwidth percentages: brokers
that share one machine's CPU would all read the same usage, while their message rates say
which one carries the traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from taureau.broker.ownership.bundles import Bundle
from taureau.broker.ownership.registry import BrokerRecord, BundleStats
from taureau.broker.ownership.settings import LoadBalancerSettings


@dataclass(frozen=True, slots=True)
class Unload:
    bundle: str  # tenant/namespace/0x..._0x...
    source: str  # broker ids
    destination: str


def pick_unloads(records: list[BrokerRecord], recently_unloaded: dict[str, float], now: float,
                 settings: LoadBalancerSettings) -> list[Unload]:
    """The bundles to move, hottest first, and where to.

    A broker is overloaded when its message rate is above the average of all brokers by more
    than `threshold_pct` percent and by at least `min_unload_msg_rate`. It sheds its hottest
    bundle, then the next ones while the rate shed stays within its excess over the average,
    never its last bundle, never a bundle unloaded within `grace_s` (`recently_unloaded`:
    bundle -> time), never an idle one. Each goes to the broker with the lowest rate at that
    point (ties to the smallest id), and only if that broker would stay below what the
    source carried before: a move that makes another broker the new hot spot is no move.
    """
    if len(records) < 2:
        return []
    rates = {r.urls.broker_id: r.load.msg_rate for r in records}
    average = sum(rates.values()) / len(rates)
    limit = average * (1 + settings.threshold_pct / 100)
    moves: list[Unload] = []
    for record in sorted(records, key=lambda r: (-r.load.msg_rate, r.urls.broker_id)):
        source = record.urls.broker_id
        carried = rates[source]
        excess = carried - average
        if carried <= limit or excess < settings.min_unload_msg_rate:
            continue
        keep_one = max(record.load.bundles, len(record.bundles)) - 1
        shed, taken = 0.0, 0
        for name, stats in _hottest_first(record.bundles):
            if taken >= keep_one:
                break
            if stats.msg_rate <= 0 or now - recently_unloaded.get(name, -settings.grace_s) < settings.grace_s:
                continue
            if shed > 0 and shed + stats.msg_rate > excess:
                break
            destination = min((rate, broker) for broker, rate in rates.items() if broker != source)[1]
            if rates[destination] + stats.msg_rate >= carried:
                continue  # would only move the hot spot
            moves.append(Unload(name, source, destination))
            shed, taken = shed + stats.msg_rate, taken + 1
            rates[destination] += stats.msg_rate
            rates[source] -= stats.msg_rate
    return moves


def _hottest_first(bundles: dict[str, BundleStats]) -> list[tuple[str, BundleStats]]:
    return sorted(bundles.items(), key=lambda item: (-item[1].msg_rate, item[0]))


def pick_splits(stats: dict[Bundle, BundleStats], bundle_counts: dict[str, int],
                settings: LoadBalancerSettings) -> list[Bundle]:
    """The bundles to split: more than `split_max_topics` topics or `split_max_msg_rate`
    messages/s, at least two topics (one topic cannot be spread), and while the namespace
    stays within `max_bundles` (`bundle_counts`: namespace -> bundles now), hottest first."""
    counts = dict(bundle_counts)
    picked = []
    for bundle, st in sorted(stats.items(), key=lambda item: (-item[1].msg_rate, -item[1].topics, str(item[0]))):
        ns = str(bundle.namespace)
        hot = st.topics > settings.split_max_topics or st.msg_rate > settings.split_max_msg_rate
        if not hot or st.topics < 2 or bundle.upper - bundle.lower < 2:
            continue
        if counts.get(ns, 1) >= settings.max_bundles:
            continue
        counts[ns] = counts.get(ns, 1) + 1
        picked.append(bundle)
    return picked
