"""A Taureau broker's own view of a run: event-loop lag, collector pauses, the causes of its
stalls and the local bookie's journal (fsync rounds; adds from hand-over to durable, with their
wait for the journal's thread and for the loop), read from its Prometheus endpoint (shared by
the benchmarks that start one)."""

from __future__ import annotations

_HISTOGRAMS = tuple(
    f"taureau_{name}_seconds_bucket"
    for name in ("event_loop_lag", "gc_pause", "journal_sync", "journal_add", "journal_inbox", "journal_hand_back")
)


def loop_report(admin_url: str) -> str:
    """The broker's own view of the run: event-loop lag, collector pauses and the journal's
    latencies (from /metrics)."""
    import httpx

    text = httpx.get(f"{admin_url}/metrics", timeout=10).text
    buckets: dict[str, list[tuple[float, int]]] = {}
    stalls: dict[str, str] = {}
    sums: dict[str, float] = {}  # histogram (and generation) -> its sum of seconds
    for line in text.splitlines():
        if line.startswith(_HISTOGRAMS):
            name = line.split("_bucket")[0]
            labels, value = line.rsplit(" ", 1)
            bound = labels.split('le="')[1].split('"')[0]
            gen = labels.split('generation="')[1].split('"')[0] if "generation" in labels else ""
            key = f"{name}{'/gen' + gen if gen else ''}"
            buckets.setdefault(key, []).append((float("inf") if bound == "+Inf" else float(bound), int(value)))
        elif line.startswith(tuple(h.replace("_bucket", "_sum") for h in _HISTOGRAMS)):
            labels, value = line.rsplit(" ", 1)
            gen = labels.split('generation="')[1].split('"')[0] if "generation" in labels else ""
            sums[f"{labels.split('_sum')[0]}{'/gen' + gen if gen else ''}"] = float(value)
        elif line.startswith("taureau_event_loop_stalls{"):
            stalls[line.split('cause="')[1].split('"')[0]] = line.rsplit(" ", 1)[1]

    def quantile(rows: list[tuple[float, int]], q: float) -> str:
        total = rows[-1][1]
        if total == 0:
            return "-"
        for bound, count in rows:
            if count >= q * total:
                return "<=%gms" % (bound * 1000) if bound != float("inf") else ">1s"
        return "-"

    parts = []
    for key, rows in sorted(buckets.items()):
        total = rows[-1][1]
        mean = f" mean {1000 * sums[key] / total:.2f}ms" if total and key in sums else ""
        parts.append(f"{key.replace('taureau_', '')}: n={total}{mean} p50 {quantile(rows, 0.5)} "
                     f"p99 {quantile(rows, 0.99)} max {quantile(rows, 1.0)}")
    parts.append("stalls over 5 ms (the last 100) by cause: "
                 + ", ".join(f"{cause} {n}" for cause, n in sorted(stalls.items())))
    return "\n  ".join(parts)
