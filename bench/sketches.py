"""Benchmark taureau.sketches: the batch path against DataSketches' per-item Python loop.

Run: python bench/sketches.py [--events 1000000] [--parts library,e2e]

library: for each kind, the same events fed (a) to the raw DataSketches object one Python
call per event (`for x in values.tolist(): sketch.update(x)`, the loop a function would
write) and (b) to the taureau.sketches kind through `update_many(numpy array)`. Keys are
device ids drawn from a Zipf law over 100,000 devices (as in `taureau demo iot`); values are
log-normal latencies. Count-Min is also run on keys that are all distinct, where
aggregating a batch cannot help. Prints events/s of both and the ratio (target >= 5x for
Count-Min and KLL on numeric keys).

e2e: events/s through a count-min sketch function (produce -> windowed function -> partials
merged per window -> merged sketch stored and published), with 1 and 2 instances, on a
standalone started for the run: the time from the first send until the merged windows hold
every event, minus the window length and grace a last window must wait anyway.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import datasketches as ds
import numpy as np

from taureau.sketches import kind

DEVICES = 100_000


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _raw(name: str) -> tuple[Any, Callable[[Any, Any], None]]:
    """The DataSketches object a hand-written function would use, and its per-item update."""
    raw: Any
    if name == "count-min":
        raw = ds.count_min_sketch(5, 2719)  # relative error 0.001, confidence 0.99
    elif name == "frequent-items":
        raw = ds.frequent_strings_sketch(10)
        return raw, lambda s, x: s.update(str(x))
    elif name == "hll":
        raw = ds.hll_sketch(12)
    elif name == "cpc":
        raw = ds.cpc_sketch(11)
    elif name == "theta":
        raw = ds.update_theta_sketch(12)
    elif name == "kll":
        raw = ds.kll_doubles_sketch(200)
    elif name == "req":
        raw = ds.req_floats_sketch(12)
    elif name == "t-digest":
        raw = ds.tdigest_double(200)
    elif name in ("var-opt", "reservoir"):
        raw = ds.var_opt_sketch(64)
        return raw, lambda s, x: s.update(str(x), 1.0)
    else:
        return None, lambda s, x: None
    return raw, lambda s, x: s.update(x)


def library(events: int, repeat: int) -> None:
    rng = np.random.default_rng(1)
    keys = (rng.zipf(1.2, events) % DEVICES).astype(np.int64)
    distinct = rng.permutation(events).astype(np.int64)
    values = rng.lognormal(3.0, 0.8, events)
    print(f"\nlibrary: {events:,} events per run, best of {repeat}; keys: Zipf(1.2) over {DEVICES:,} devices "
          f"({len(np.unique(keys)):,} distinct in the run)")
    print(f"{'kind':<26}{'per-item loop ev/s':>20}{'batch path ev/s':>18}{'ratio':>9}")
    rows: list[tuple[str, str, np.ndarray]] = [
        (name, name, values if kind(name).input == "number" else keys)
        for name in ("count-min", "frequent-items", "hll", "cpc", "theta", "kll", "req", "t-digest",
                     "bloom", "reservoir", "var-opt")
    ]
    rows.insert(1, ("count-min (all distinct)", "count-min", distinct))
    for label, name, data in rows:
        raw, update = _raw(name)
        cls = kind(name)
        if raw is None:  # bloom: no DataSketches filter in Python; rbloom's own per-item add
            def loop(data: np.ndarray = data, cls: Any = cls) -> None:
                s = cls.from_params({"expected_items": 500_000})
                for x in data.tolist():
                    s.update(x)
        else:
            def loop(data: np.ndarray = data, name: str = name, update: Callable = update) -> None:
                s, _ = _raw(name)
                for x in data.tolist():
                    update(s, x)

        params = {"expected_items": 500_000} if name == "bloom" else {}

        def batch(data: np.ndarray = data, cls: Any = cls, params: dict = params) -> None:
            cls.from_params(params).update_many(data)

        t_loop, t_batch = _best(loop, repeat), _best(batch, repeat)
        print(f"{label:<26}{events / t_loop:>20,.0f}{events / t_batch:>18,.0f}{t_loop / t_batch:>8.1f}x")


def end_to_end(events: int) -> None:
    import json
    import sys
    import tempfile
    from pathlib import Path

    import pulsar

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the e2e harness starts standalone
    from taureau.sketches.client import SketchesClient, SketchesClientError
    from tests.e2e.harness import Standalone

    window_ms, grace_ms = 1000, 2000
    rng = np.random.default_rng(2)
    ids = (rng.zipf(1.2, events) % DEVICES).tolist()
    payloads = [json.dumps({"device": f"dev-{d}"}).encode() for d in ids]
    print(f"\ne2e: {events:,} events through a count-min sketch function ({window_ms} ms windows)")
    with tempfile.TemporaryDirectory() as data:
        server = Standalone(Path(data), state=True).start()
        try:
            c = SketchesClient(server.admin_url)
            client = pulsar.Client(server.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
            for instances in (1, 2):
                name, topic = f"bench-{instances}", f"persistent://public/default/bench-sketch-{instances}"
                c.create(name, "count-min", [topic], key_field="device", window_ms=window_ms,
                         parallelism=instances, grace_ms=grace_ms)
                while c.get(name).get("numRunning", 0) < instances:
                    time.sleep(0.05)
                producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=5,
                                                  max_pending_messages=10_000, block_if_queue_full=True)
                started = time.perf_counter()
                for payload in payloads:
                    producer.send_async(payload, None)
                producer.flush()
                sent = time.perf_counter() - started
                while True:
                    try:
                        if c.query(name, windows=30, key="dev-1")["n"] >= events:
                            break
                    except SketchesClientError:
                        pass
                    time.sleep(0.05)
                total = time.perf_counter() - started - (window_ms + grace_ms) / 1000
                print(f"{instances} instance(s): {events / max(total, 1e-9):>10,.0f} events/s end to end "
                      f"(producing alone: {events / sent:,.0f} events/s)")
                c.delete(name)
            client.close()
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--e2e-events", type=int, default=200_000)
    parser.add_argument("--parts", default="library,e2e")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if "library" in parts:
        library(args.events, args.repeat)
    if "e2e" in parts:
        end_to_end(args.e2e_events)


if __name__ == "__main__":
    main()
