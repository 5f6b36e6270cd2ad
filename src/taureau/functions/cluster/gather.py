"""`functions status` / `stats` of a function whose instances run on several workers: the
instances' own answers (local, or fetched from the worker running each), put in Pulsar's
FunctionStatus / FunctionStats shape. As Pulsar's, the overall average latency is the mean of
the instances' averages."""

from __future__ import annotations

from typing import Any

from taureau.functions.deployment import Deployment

COUNTERS = ("receivedTotal", "processedSuccessfullyTotal", "systemExceptionsTotal", "userExceptionsTotal")


def merged_status(entries: list[tuple[int, dict[str, Any]]], local: Deployment | None,
                  target: int) -> dict[str, Any]:
    entries = sorted(entries, key=lambda e: e[0])
    last = local.scaling[-1] if local is not None and local.scaling else None
    return {
        "numInstances": len(entries),
        "numRunning": sum(1 for _, st in entries if st.get("running")),
        "instances": [{"instanceId": i, "status": st} for i, st in entries],
        "backlog": local.backlog if local is not None else 0,
        "targetInstances": target,
        "lastScalingDecision": None if last is None else {
            "timeMs": last.time_ms, "from": last.from_instances, "to": last.to_instances, "reason": last.reason,
        },
    }


def merged_stats(entries: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    entries = sorted(entries, key=lambda e: e[0])
    total: dict[str, Any] = {key: sum(int(m.get(key, 0)) for _, m in entries) for key in COUNTERS}
    latencies = [float(m.get("avgProcessLatency", 0.0)) for _, m in entries if m.get("avgProcessLatency")]
    total["avgProcessLatency"] = sum(latencies) / len(latencies) if latencies else 0.0
    total["lastInvocation"] = max((int(m.get("lastInvocation", 0)) for _, m in entries), default=0)
    total["instances"] = [{"instanceId": i, "metrics": m} for i, m in entries]
    return total
