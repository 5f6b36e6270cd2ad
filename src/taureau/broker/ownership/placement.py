"""The load manager's choice: a new bundle goes to the least-loaded live broker (fewest
bundles, then fewest topics, then the lowest message rate, then the smallest id, so brokers
that read the same reports choose the same)."""

from __future__ import annotations

from taureau.broker.ownership.registry import BrokerLoad, BrokerRecord, BrokerUrls


def least_loaded(records: list[BrokerRecord], me: BrokerUrls, my_load: BrokerLoad) -> BrokerUrls:
    """`me` counts with its current load (its own report may be seconds old) and always
    competes, even if its registration is not listed yet."""
    candidates = [(my_load.key(), me.broker_id, me)]
    candidates += [(r.load.key(), r.urls.broker_id, r.urls) for r in records if r.urls.broker_id != me.broker_id]
    return min(candidates, key=lambda c: (c[0], c[1]))[2]
