"""GET /metrics: Prometheus text exposition of per-topic rates, counters, backlog and storage."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

router = APIRouter(tags=["metrics"])

_GAUGES = [
    ("pulsar_rate_in", "Messages published per second", "msgRateIn"),
    ("pulsar_rate_out", "Messages dispatched per second", "msgRateOut"),
    ("pulsar_throughput_in", "Bytes published per second", "msgThroughputIn"),
    ("pulsar_throughput_out", "Bytes dispatched per second", "msgThroughputOut"),
]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# Pulsar's per-remote-cluster replication series: (name, help, field of the replicator's stats).
_REPLICATION = [
    ("pulsar_replication_backlog", "Entries not yet stored by the remote cluster", "replicationBacklog"),
    ("pulsar_replication_rate_out", "Messages replicated per second", "msgRateOut"),
    ("pulsar_replication_connected_count", "1 while the replicator is connected", "connected"),
]


def _replication_lines(rows: list) -> list[str]:
    series = [(f'{labels},remote_cluster="{_escape(remote)}"', stats)
              for labels, _, topic, _ in rows if topic.replication is not None
              for remote, stats in topic.replication.stats().items()]
    lines: list[str] = []
    for metric, help_text, key in _REPLICATION:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f"{metric}{{{labels}}} {float(stats[key])}" for labels, stats in series]
    return lines


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> str:
    service = request.app.state.service
    service.update_rates()
    lines: list[str] = []
    topics = service.loaded_topics()
    rows = []
    for topic in topics:
        labels = (
            f'cluster="{_escape(service.config.cluster_name)}",namespace="{_escape(str(topic.name.namespace_name))}",'
            f'topic="{_escape(str(topic.name))}"'
        )
        rates = service.rates.get(str(topic.name), {})
        backlog = sum(sub.cursor.backlog for sub in topic.subscriptions.values())
        rows.append((labels, rates, topic, backlog))
    for metric, help_text, key in _GAUGES:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        lines += [f"{metric}{{{labels}}} {rates.get(key, 0.0)}" for labels, rates, _, _ in rows]
    simple = [
        ("pulsar_in_messages_total", "counter", "Messages published", lambda t, b: t.msg_in),
        ("pulsar_in_bytes_total", "counter", "Bytes published", lambda t, b: t.bytes_in),
        (
            "pulsar_storage_size",
            "gauge",
            "Bytes retained in the topic's ledgers",
            lambda t, b: t.ledger.total_size,
        ),
        ("pulsar_msg_backlog", "gauge", "Unacknowledged entries over all subscriptions", lambda t, b: b),
        ("pulsar_producers_count", "gauge", "Connected producers", lambda t, b: len(t.producers)),
        ("pulsar_subscriptions_count", "gauge", "Subscriptions", lambda t, b: len(t.subscriptions)),
    ]
    for metric, kind, help_text, value in simple:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        lines += [f"{metric}{{{labels}}} {value(topic, backlog)}" for labels, _, topic, backlog in rows]
    lines += _replication_lines(rows)
    lines += ["# HELP pulsar_topics_count Loaded topics", "# TYPE pulsar_topics_count gauge"]
    lines.append(f"pulsar_topics_count {len(topics)}")
    # Layers above the broker (the functions worker) add their own series here.
    for source in getattr(request.app.state, "metrics_sources", []):
        lines += source()
    return "\n".join(lines) + "\n"
