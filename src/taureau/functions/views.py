"""The JSON shapes of `functions status` / `stats` (Pulsar's FunctionStatus and FunctionStats,
plus Taureau's scaling fields) and the Prometheus lines of `/metrics`."""

from __future__ import annotations

import re
from typing import Any

from taureau.functions.deployment import Deployment
from taureau.functions.errors import FunctionNotFoundError
from taureau.functions.stats import LATENCY_BUCKETS_MS
from taureau.functions.supervisor import InstanceState, InstanceSupervisor


def _select(deployment: Deployment, instance_id: int | None) -> list[InstanceSupervisor]:
    supervisors = sorted(deployment.supervisors.values(), key=lambda s: s.instance_id)
    if instance_id is None:
        return supervisors
    chosen = [s for s in supervisors if s.instance_id == instance_id]
    if not chosen:
        raise FunctionNotFoundError(f"instance {instance_id} of {deployment.config.fqfn} is not running")
    return chosen


def _average_latency(status: dict[str, Any]) -> float:
    count = status.get("latencyCount", 0)
    return status.get("latencySumMs", 0.0) / count if count else 0.0


def instance_status(s: InstanceSupervisor, worker_id: str) -> dict[str, Any]:
    st, totals = s.status, s.totals()
    return {
        "running": s.state is InstanceState.RUNNING,
        "state": s.state.value,
        "error": s.error,
        "numRestarts": s.restarts,
        "numReceived": totals["received"],
        "numSuccessfullyProcessed": totals["processedOk"],
        "numUserExceptions": totals["userExceptions"],
        "latestUserExceptions": st.get("latestUserExceptions", []),
        "numSystemExceptions": totals["systemExceptions"],
        "latestSystemExceptions": st.get("latestSystemExceptions", []),
        "averageLatency": _average_latency(st),
        "lastInvocationTime": st.get("lastInvocationMs", 0),
        "workerId": worker_id,
        "pid": s.host.pid if s.host is not None else None,
        "limits": s.limits_in_force(),
    }


def function_status(deployment: Deployment, worker_id: str, instance_id: int | None) -> dict[str, Any]:
    supervisors = _select(deployment, instance_id)
    if instance_id is not None:
        return instance_status(supervisors[0], worker_id)
    last = deployment.scaling[-1] if deployment.scaling else None
    return {
        "numInstances": len(supervisors),
        "numRunning": sum(1 for s in supervisors if s.state is InstanceState.RUNNING),
        "instances": [{"instanceId": s.instance_id, "status": instance_status(s, worker_id)} for s in supervisors],
        "backlog": deployment.backlog,
        "targetInstances": deployment.target,
        "lastScalingDecision": None if last is None else {
            "timeMs": last.time_ms, "from": last.from_instances, "to": last.to_instances, "reason": last.reason,
        },
    }


def instance_metrics(s: InstanceSupervisor) -> dict[str, Any]:
    totals = s.totals()
    return {
        "receivedTotal": totals["received"],
        "processedSuccessfullyTotal": totals["processedOk"],
        "systemExceptionsTotal": totals["systemExceptions"],
        "userExceptionsTotal": totals["userExceptions"],
        "avgProcessLatency": _average_latency(s.status),
        "lastInvocation": s.status.get("lastInvocationMs", 0),
        "userMetrics": {k: v["sum"] / v["count"] if v["count"] else 0.0
                        for k, v in s.status.get("userMetrics", {}).items()},
    }


def function_stats(deployment: Deployment, instance_id: int | None) -> dict[str, Any]:
    supervisors = _select(deployment, instance_id)
    metrics = [instance_metrics(s) for s in supervisors]
    if instance_id is not None:
        return metrics[0]
    total: dict[str, Any] = {key: sum(m[key] for m in metrics)
                             for key in ("receivedTotal", "processedSuccessfullyTotal",
                                         "systemExceptionsTotal", "userExceptionsTotal")}
    count = sum(s.status.get("latencyCount", 0) for s in supervisors)
    latency = sum(s.status.get("latencySumMs", 0.0) for s in supervisors)
    total["avgProcessLatency"] = latency / count if count else 0.0
    total["lastInvocation"] = max((m["lastInvocation"] for m in metrics), default=0)
    total["instances"] = [{"instanceId": s.instance_id, "metrics": m} for s, m in zip(supervisors, metrics, strict=True)]
    return total


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_lines(deployments: list[Deployment], cluster: str = "standalone") -> list[str]:
    """Pulsar's function metric names, one series per instance."""
    out: list[str] = []
    counters = (
        ("pulsar_function_received_total", "received"),
        ("pulsar_function_processed_successfully_total", "processedOk"),
        ("pulsar_function_user_exceptions_total", "userExceptions"),
        ("pulsar_function_system_exceptions_total", "systemExceptions"),
    )
    rows = [(d, s) for d in deployments for s in sorted(d.supervisors.values(), key=lambda s: s.instance_id)]

    def labels(d: Deployment, s: InstanceSupervisor, extra: str = "") -> str:
        c = d.config
        return (f'cluster="{cluster}",tenant="{_escape(c.tenant)}",namespace="{_escape(c.tenant)}/'
                f'{_escape(c.namespace)}",name="{_escape(c.name)}",instance_id="{s.instance_id}",'
                f'fqfn="{_escape(c.fqfn)}"{extra}')

    for metric, key in counters:
        out.append(f"# TYPE {metric} counter")
        out.extend(f"{metric}{{{labels(d, s)}}} {s.totals()[key]}" for d, s in rows)
    out.append("# TYPE pulsar_function_last_invocation gauge")
    out.extend(f"pulsar_function_last_invocation{{{labels(d, s)}}} {s.status.get('lastInvocationMs', 0)}"
               for d, s in rows)
    out.append("# TYPE pulsar_function_process_latency_ms histogram")
    for d, s in rows:
        buckets = s.status.get("latencyBuckets") or [0] * (len(LATENCY_BUCKETS_MS) + 1)
        running = 0
        for bound, n in zip([*LATENCY_BUCKETS_MS, "+Inf"], buckets, strict=True):
            running += n
            le = f',le="{bound}"'
            out.append(f"pulsar_function_process_latency_ms_bucket{{{labels(d, s, le)}}} {running}")
        out.append(f"pulsar_function_process_latency_ms_sum{{{labels(d, s)}}} {s.status.get('latencySumMs', 0.0)}")
        out.append(f"pulsar_function_process_latency_ms_count{{{labels(d, s)}}} {s.status.get('latencyCount', 0)}")
    user: dict[str, list[str]] = {}  # metric -> its series (record_metric names become metric names)
    for d, s in rows:
        for name, v in s.status.get("userMetrics", {}).items():
            metric = "pulsar_function_user_metric_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
            user.setdefault(metric, []).extend([f"{metric}_sum{{{labels(d, s)}}} {v['sum']}",
                                                f"{metric}_count{{{labels(d, s)}}} {v['count']}"])
    for metric, series in sorted(user.items()):
        out.append(f"# TYPE {metric} summary")
        out.extend(series)
    out.append("# TYPE pulsar_function_instances gauge")
    out.extend(f'pulsar_function_instances{{cluster="{cluster}",fqfn="{_escape(d.config.fqfn)}"}} '
               f"{len(d.running())}" for d in deployments)
    return out
