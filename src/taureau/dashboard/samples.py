"""What one live sample holds: per-topic rates, backlog and storage from the broker, and
per-function processed / failed rates from the functions worker (read in process, as
`/metrics` does), with the totals the overview chart plots."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taureau.broker.service import BrokerService
    from taureau.functions.worker import FunctionWorker

MAX_TOPICS = 1000  # topics in one sample (the busiest first); totals count every topic
MAX_FUNCTIONS = 1000

TOTAL_KEYS = ("rateIn", "rateOut", "throughputIn", "throughputOut", "backlog", "storage")
_RATE_KEYS = (("rateIn", "msgRateIn"), ("rateOut", "msgRateOut"),
              ("throughputIn", "msgThroughputIn"), ("throughputOut", "msgThroughputOut"))


def topics_sample(service: BrokerService, detail: bool = True) -> dict[str, Any]:
    """Rates as the broker's rate loop last computed them (once a second), never recomputed
    here: a second reader of the counters would shorten the broker's own windows. Without
    `detail`, the totals and the count alone (no row per topic)."""
    totals = dict.fromkeys(TOTAL_KEYS, 0.0)
    rows = []
    count = 0
    for topic in service.loaded_topics():
        count += 1
        name = str(topic.name)  # built each time: once per topic here, not twice
        rates = service.rates.get(name, {})
        row: dict[str, Any] = {ours: rates.get(theirs, 0.0) for ours, theirs in _RATE_KEYS}
        row["backlog"] = sum(sub.cursor.backlog for sub in topic.subscriptions.values())
        row["storage"] = topic.ledger.total_size
        for key in totals:
            totals[key] += row[key]
        if detail:
            row["name"] = name
            row["producers"] = len(topic.producers)
            row["subscriptions"] = len(topic.subscriptions)
            rows.append(row)
    if not detail:
        return {"totals": totals, "topicCount": count}
    rows.sort(key=lambda r: (-(r["rateIn"] + r["rateOut"]), r["name"]))
    return {"totals": totals, "topics": rows[:MAX_TOPICS], "topicCount": count}


class FunctionRates:
    """Processed and failed messages per second of each deployed function, from the change
    of its instances' counters since the previous call."""

    def __init__(self, worker: FunctionWorker) -> None:
        self._worker = worker
        self._last: dict[str, tuple[float, int, int]] = {}  # fqfn -> (time, processed, failed)

    def __call__(self) -> dict[str, Any]:
        now = time.monotonic()
        rows, seen = [], set()
        for fqfn, deployment in list(self._worker.deployments.items())[:MAX_FUNCTIONS]:
            supervisors = list(deployment.supervisors.values())
            processed = failed = 0
            for s in supervisors:
                counts = s.totals()
                processed += counts["processedOk"]
                failed += counts["userExceptions"] + counts["systemExceptions"]
            previous = self._last.get(fqfn)
            self._last[fqfn] = (now, processed, failed)
            seen.add(fqfn)
            elapsed = max(now - previous[0], 1e-6) if previous else 0.0
            rows.append({
                "fqfn": fqfn,
                "instances": len(supervisors),
                "running": len(deployment.running()),
                "processed": processed,
                "failed": failed,
                "processedRate": max(processed - previous[1], 0) / elapsed if previous else 0.0,
                "failedRate": max(failed - previous[2], 0) / elapsed if previous else 0.0,
                "backlog": deployment.backlog,
            })
        for gone in set(self._last) - seen:
            del self._last[gone]
        return {"functions": rows}


MAX_SERVERS = 100
MAX_STATE_NAMESPACES = 100
_SERVER_KEYS = ("address", "state", "block_size", "blocks", "used", "free", "used_bytes", "budget_bytes")


def state_sample(stats: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """The state layer from its controller's `stats()` (what `/metrics` shows of it): memory
    servers and their blocks, blocks held per top-level directory and its quota, structures,
    and the counters of splits, merges, lease expiries... since start."""

    def sample() -> dict[str, Any]:
        st = stats()
        quotas = st.get("quotas", {})
        namespaces = sorted(st["namespaces"].items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_STATE_NAMESPACES]
        return {"state": {
            "servers": [{k: s[k] for k in _SERVER_KEYS} for s in st["memory_servers"][:MAX_SERVERS]],
            "namespaces": [{"path": path, "blocks": blocks, "quota": quotas.get(path, {}).get("blocks")}
                           for path, blocks in namespaces],
            "structures": st["structures"],
            "counters": st["counters"],
        }}

    return sample


def combined(service: BrokerService, sources: list[Callable[[], dict[str, Any]]]) -> Callable[[bool], dict]:
    """One sample: the broker's topics, then what each source adds under its own key. The
    sources run without `detail` too: the function rates are changes since their last call."""

    def sample(detail: bool) -> dict[str, Any]:
        out = {"t": int(time.time() * 1000), **topics_sample(service, detail)}
        for source in sources:
            out.update(source())
        return out

    return sample
