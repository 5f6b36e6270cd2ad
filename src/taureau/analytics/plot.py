"""The job's timeline as Lithops draws it: each call's submit, start and end over time, and
the calls each worker ran (a Gantt chart), in one PNG."""

from __future__ import annotations

from typing import Any


def plot(futures: list[Any], dst: str) -> str:
    import matplotlib  # only plotting needs it: the executor works without

    matplotlib.use("Agg")  # files only: no display needed, none assumed
    import matplotlib.pyplot as plt

    rows = [f.stats for f in futures if "worker_start_tstamp" in f.stats]
    if not rows:
        raise ValueError("no finished calls to plot")
    t0 = min(min(r.get("host_submit_tstamp", r["worker_start_tstamp"]), r["worker_start_tstamp"]) for r in rows)
    fig, (ax_calls, ax_workers) = plt.subplots(1, 2, figsize=(13, 5))
    for i, r in enumerate(rows):
        submit = r.get("host_submit_tstamp", r["worker_start_tstamp"]) - t0
        start, end = r["worker_start_tstamp"] - t0, r["worker_end_tstamp"] - t0
        ax_calls.plot([submit, start], [i, i], color="lightgray", linewidth=1)
        ax_calls.plot([start, end], [i, i], color="tab:red" if r.get("speculative_copy") else "tab:blue", linewidth=2)
    ax_calls.set(xlabel="seconds since the first submit", ylabel="call", title="calls: waiting (gray), running (blue)")
    workers = sorted({r["worker"] for r in rows})
    index = {w: i for i, w in enumerate(workers)}
    for r in rows:
        start, end = r["worker_start_tstamp"] - t0, r["worker_end_tstamp"] - t0
        ax_workers.barh(index[r["worker"]], max(end - start, 1e-4), left=start, height=0.6,
                        color="tab:red" if r.get("speculative_copy") else "tab:green", edgecolor="black", linewidth=0.3)
    ax_workers.set_yticks(range(len(workers)), workers)
    ax_workers.set(xlabel="seconds since the first submit", title=f"calls per worker ({len(rows)} calls)")
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    plt.close(fig)
    return dst
