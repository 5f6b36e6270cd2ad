"""Serverless analytics benchmark: Taureau's executor against its peers, in one run.

1. tasks/s for N no-op calls (default 1,000): Taureau's embedded executor (warm workers),
   Lithops' localhost executor, multiprocessing.Pool.map and Ray tasks, each warmed up first.
2. A partitioned sort of random 100-byte records (1 GB by default), generation included:
   Taureau (examples/analytics/sort.py) against one process (numpy) and Ray Data's sort.
3. Word count throughput (MB/s) over generated text (examples/analytics/wordcount.py), with
   one process's collections.Counter beside it.

    python bench/analytics.py [--tasks 1000] [--sort-gb 1] [--wordcount-mb 256] [--parts noop,sort,wordcount]
        [--peers lithops,pool,ray] [--plot docs/analytics-benchmark.png]

Every figure is wall time on this machine, with the same worker count for every system.
"""

from __future__ import annotations

import argparse
import collections
import gc
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples.analytics import sort, wordcount  # noqa: E402
from taureau.analytics import Executor  # noqa: E402


def noop(x):
    return x


def rate(run: Callable[[], object], tasks: int, repeats: int) -> float:
    """Best of `repeats` runs, in tasks per second (the best is the least disturbed by others
    sharing the machine)."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return tasks / best


# -- 1. no-op tasks ---------------------------------------------------------------------------


def noop_taureau(tasks: int, workers: int, repeats: int) -> float:
    with Executor(workers=workers, progress=False) as ex:
        ex.get_result(ex.map(noop, range(workers * 4)))
        return rate(lambda: ex.get_result(ex.map(noop, range(tasks))), tasks, repeats)


def noop_pool(tasks: int, workers: int, repeats: int) -> float:
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(noop, range(workers * 4))
        return rate(lambda: pool.map(noop, range(tasks)), tasks, repeats)


def noop_ray(tasks: int, workers: int, repeats: int) -> float:
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(noop)
        ray.get([remote.remote(i) for i in range(workers * 4)])
        return rate(lambda: ray.get([remote.remote(i) for i in range(tasks)]), tasks, repeats)
    finally:
        ray.shutdown()


def noop_lithops(tasks: int, workers: int, repeats: int) -> float:
    import logging

    import lithops

    logging.getLogger("lithops").setLevel(logging.WARNING)
    config = {"lithops": {"backend": "localhost", "storage": "localhost", "log_level": "WARNING"},
              # This interpreter: Lithops' default runtime is `python` from PATH, which may not
              # be the one Lithops is installed in (its tasks then die importing it).
              "localhost": {"worker_processes": workers, "runtime": sys.executable}}  # fmt: skip
    fexec = lithops.FunctionExecutor(config=config)
    try:
        fexec.get_result(fexec.map(noop, range(workers)), show_progressbar=False)
        return rate(lambda: fexec.get_result(fexec.map(noop, range(tasks)), show_progressbar=False), tasks, repeats)
    finally:
        fexec.clean()


# -- 2. sort --------------------------------------------------------------------------------


def sort_taureau(total: int, parts: int, workers: int) -> float:
    blocks = 256 + 4 * total // (8 << 20)
    with Executor(workers=workers, progress=False, blocks=blocks) as ex:
        started = time.perf_counter()
        result = sort.run(ex, total, parts, parts)
        elapsed = time.perf_counter() - started
    assert sum(n for n, _, _ in result.values()) == total // sort.RECORD // parts * parts
    return elapsed


def sort_single(total: int, parts: int) -> float:
    started = time.perf_counter()
    recs = np.concatenate([sort.records(p, total // sort.RECORD // parts) for p in range(parts)])
    out = recs[np.argsort(recs["key"], kind="stable")]
    elapsed = time.perf_counter() - started
    assert len(out) == total // sort.RECORD // parts * parts
    return elapsed


def sort_ray(total: int, parts: int, workers: int) -> float:
    import pyarrow as pa
    import ray

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        count = total // sort.RECORD // parts

        def column(raw: np.ndarray, lo: int, hi: int) -> pa.Array:
            # Straight from the bytes: numpy's S10 drops trailing NUL bytes of a key.
            data = pa.py_buffer(np.ascontiguousarray(raw[:, lo:hi]).tobytes())
            return pa.FixedSizeBinaryArray.from_buffers(pa.binary(hi - lo), len(raw), [None, data])

        def generate(batch: dict) -> pa.Table:
            recs = np.concatenate([sort.records(int(p), count) for p in batch["id"]])
            raw = recs.view(np.uint8).reshape(-1, sort.RECORD)
            return pa.table({"key": column(raw, 0, sort.KEY), "value": column(raw, sort.KEY, sort.RECORD)})

        started = time.perf_counter()
        ds = ray.data.range(parts, override_num_blocks=parts).map_batches(generate, batch_size=1)
        n = ds.sort("key").materialize().count()
        elapsed = time.perf_counter() - started
        assert n == count * parts
        return elapsed
    finally:
        ray.shutdown()


# -- 3. word count --------------------------------------------------------------------------


def wordcount_rates(megabytes: float, workers: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = wordcount.generate(tmp, megabytes, files=8)
        size = sum(os.path.getsize(p) for p in paths) / 1e6
        with Executor(workers=workers, progress=False) as ex:
            started = time.perf_counter()
            counts = wordcount.run(ex, paths)
            taureau = time.perf_counter() - started
        started = time.perf_counter()
        local: collections.Counter[str] = collections.Counter()
        for p in paths:
            with open(p) as f:
                for line in f:
                    local.update(line.split())
        single = time.perf_counter() - started
    assert counts == dict(local)
    return size, size / taureau, size / single


# -- report ---------------------------------------------------------------------------------


def attempt(what: str, fn: Callable[[], float]) -> float | None:
    try:
        return fn()
    except ImportError as exc:
        print(f"  {what}: skipped ({exc})", flush=True)
    return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=1000)
    p.add_argument("--lithops-tasks", type=int, help="no-op calls for Lithops (default: --tasks)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--sort-gb", type=float, default=1.0)
    p.add_argument("--sort-parts", type=int, default=16)
    p.add_argument("--wordcount-mb", type=float, default=256)
    p.add_argument("--parts", default="noop,sort,wordcount")
    p.add_argument("--peers", default="lithops,pool,ray", help="the no-op part's peers (Ray and Lithops take minutes)")
    p.add_argument("--plot", help="also draw the figures to this PNG")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    figures: dict[str, float | None] = {}
    w = args.workers
    print(f"workers: {w} on {os.cpu_count()} cores")
    if "noop" in parts:
        n = args.tasks
        print(f"\n1. {n} no-op calls (best of {args.repeats}), tasks/s", flush=True)
        figures["taureau"] = noop_taureau(n, w, args.repeats)
        peers = set(args.peers.split(","))
        ln = args.lithops_tasks or n
        if "pool" in peers:
            figures["pool"] = noop_pool(n, w, args.repeats)
        if "ray" in peers:
            figures["ray"] = attempt("ray", lambda: noop_ray(n, w, args.repeats))
        if "lithops" in peers:
            figures["lithops"] = attempt("lithops", lambda: noop_lithops(ln, w, 1))
        print(f"  {'Taureau Executor()':<28}{figures['taureau']:>12,.0f}")
        for name, label, target in [("lithops", f"Lithops localhost ({ln} calls)", 100), ("pool", "multiprocessing.Pool.map", 0.5),
                                    ("ray", "Ray tasks", 1.0)]:  # fmt: skip
            peer = figures.get(name)
            if peer:
                ratio = figures["taureau"] / peer
                verdict = "met" if ratio >= target else "NOT met"
                print(f"  {label:<28}{peer:>12,.1f}   Taureau/peer {ratio:8.2f}x (target >= {target}x: {verdict})")
    if "sort" in parts:
        total = int(args.sort_gb * 1e9)
        print(f"\n2. sort of {total / 1e9:g} GB of 100-byte records, generation included, seconds", flush=True)
        figures["sort_taureau"] = sort_taureau(total, args.sort_parts, w)
        figures["sort_single"] = sort_single(total, args.sort_parts)
        figures["sort_ray"] = attempt("ray.data", lambda: sort_ray(total, args.sort_parts, w))
        print(f"  {'Taureau (map_reduce)':<28}{figures['sort_taureau']:>10.2f}")
        for name, label in [("sort_single", "one process (numpy)"), ("sort_ray", "Ray Data sort")]:
            peer = figures.get(name)
            if peer:
                print(f"  {label:<28}{peer:>10.2f}   peer/Taureau {peer / figures['sort_taureau']:6.2f}x")
    if "wordcount" in parts:
        print(f"\n3. word count over {args.wordcount_mb:g} MB of text, MB/s", flush=True)
        size, taureau, single = wordcount_rates(args.wordcount_mb, w)
        figures["wc_taureau"], figures["wc_single"] = taureau, single
        print(f"  {'Taureau (map_reduce by key)':<28}{taureau:>10.1f}   ({size:.0f} MB)")
        print(f"  {'one process (Counter)':<28}{single:>10.1f}   Taureau/peer {taureau / single:6.2f}x")
    if args.plot:
        draw(figures, args.plot)
        print(f"\nplot: {args.plot}")


def draw(figures: dict[str, float | None], dst: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("no-op calls (tasks/s, log)", ["taureau", "pool", "ray", "lithops"], True),
              ("sort (s, lower is better)", ["sort_taureau", "sort_single", "sort_ray"], False),
              ("word count (MB/s)", ["wc_taureau", "wc_single"], False)]  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, (title, keys, log) in zip(axes, panels, strict=True):
        shown = [(k.split("_")[-1], figures[k]) for k in keys if figures.get(k)]
        if shown:
            ax.bar([k for k, _ in shown], [v for _, v in shown], color=["tab:green"] + ["tab:gray"] * (len(shown) - 1))
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
