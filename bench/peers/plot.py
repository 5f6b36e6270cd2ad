"""Bar chart of a messaging benchmark run: throughput per workload, publish and end-to-end latency
p50/p99 beside it."""

from __future__ import annotations

from pathlib import Path

from .base import LATENCY_RATE
from .runner import CellResult, best

THROUGHPUT = [("produce", True), ("e2e", True), ("produce", False), ("e2e", False)]
LATENCY = [("latency", True), ("latency", False), ("e2e-latency", True), ("e2e-latency", False)]


def _label(workload: str, batched: bool) -> str:
    return f"{workload}\n{'batched' if batched else 'unbatched'}"


def plot(results: list[CellResult], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = list(dict.fromkeys(c.peer for c in results))
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [2, 1.3]})
    width = 0.8 / len(peers)
    for i, peer in enumerate(peers):
        rates = [getattr(best(results, peer, w, b), "rate", 0.0) / 1000 for w, b in THROUGHPUT]
        xs = [x + i * width for x in range(len(THROUGHPUT))]
        bars = ax_t.bar(xs, rates, width, label=peer)
        ax_t.bar_label(bars, fmt="%.0f", fontsize=7)
        cells = [best(results, peer, w, b) for w, b in LATENCY]
        p99 = [getattr(c, "p99_ms", 0.0) for c in cells]
        # a * marks a client that could not sustain the offered rate (latency from its send call)
        marks = [
            f"{v:.1f}" + ("*" if c and c.rate < 0.95 * LATENCY_RATE else "")
            for v, c in zip(p99, cells, strict=True)
        ]
        xs = [x + i * width for x in range(len(LATENCY))]
        bars = ax_l.bar(xs, p99, width, label=f"{peer} p99", alpha=0.5)
        ax_l.bar_label(bars, labels=marks, fontsize=7)
        ax_l.scatter(
            xs, [getattr(c, "p50_ms", 0.0) for c in cells], marker="_", s=200, color="black", zorder=3
        )
    centre = width * (len(peers) - 1) / 2
    ax_t.set_xticks([x + centre for x in range(len(THROUGHPUT))], [_label(*c) for c in THROUGHPUT])
    ax_t.set_ylabel("thousand msgs/s (best process count)")
    ax_t.set_title("Throughput, 100-byte messages, fsync on")
    ax_t.legend()
    timed = {"latency": "publish", "e2e-latency": "send→receive"}
    ticks = [f"{timed[w]}\n{'batched' if b else 'unbatched'}" for w, b in LATENCY]
    ax_l.set_xticks([x + centre for x in range(len(LATENCY))], ticks)
    ax_l.set_yscale("log")
    ax_l.set_ylabel("latency ms (bar p99, tick p50)")
    ax_l.set_title("Latency at an offered 10k msgs/s (* = rate not sustained)")
    ax_l.legend(fontsize=7)
    fig.suptitle("bench/messaging.py on 2 cores, loopback, Python clients")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
