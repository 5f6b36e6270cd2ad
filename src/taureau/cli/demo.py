"""`taureau demo iot`: sensor events through four sketch functions, with live answers.

It generates events `{"device": "dev-<id>", "latency_ms": <float>}` (device ids Zipf-
distributed, latencies log-normal), deploys count-min, frequent-items, hll and kll sketch
functions on them, and prints, for every merged window, the heaviest devices, the distinct
devices, the latency quantiles and a Count-Min estimate with its bounds. It needs a running
`taureau standalone`; the sketches are deleted at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

from taureau.sketches.client import SketchesClient, SketchesClientError
from taureau.sketches.errors import SketchError

TOPIC = "iot-events"
SKETCHES: dict[str, tuple[str, dict[str, Any]]] = {
    "iot-device-counts": ("count-min", {"key_field": "device", "params": {"relative_error": 0.001}}),
    "iot-top-devices": ("frequent-items", {"key_field": "device", "params": {"lg_max_k": 8}}),
    "iot-distinct-devices": ("hll", {"key_field": "device", "params": {"lg_k": 12}}),
    "iot-latency": ("kll", {"value_field": "latency_ms", "params": {"k": 200}}),
}


def events(rng: np.random.Generator, n: int, devices: int) -> list[bytes]:
    ids = rng.zipf(1.3, n) % devices
    latency = rng.lognormal(3.0, 0.6, n)
    return [json.dumps({"device": f"dev-{d}", "latency_ms": round(float(x), 2)}).encode()
            for d, x in zip(ids.tolist(), latency.tolist(), strict=True)]


def _deploy(c: SketchesClient, topic: str, window_ms: int, parallelism: int) -> None:
    existing = {s["name"] for s in c.list()}
    for name, (kind, fields) in SKETCHES.items():
        if name in existing:
            c.delete(name)
        c.create(name, kind, [topic], window_ms=window_ms, parallelism=parallelism, **fields)
        print(f"deployed {name:<22} {kind:<15} on {topic}", flush=True)


def _report(c: SketchesClient, window: int) -> str:
    top = c.query("iot-top-devices", window=window, top=5)
    distinct = c.query("iot-distinct-devices", window=window, distinct=True)
    latency = c.query("iot-latency", window=window, quantiles=[0.5, 0.99])
    heaviest = top["top"][0]["item"] if top.get("top") else "dev-0"
    counts = c.query("iot-device-counts", window=window, key=heaviest)
    low, high = distinct["bounds"]["2sigma"]
    p50, p99 = (q["value"] for q in latency["quantiles"]) if "quantiles" in latency else (float("nan"),) * 2
    heavy = ", ".join(f"{t['item']}={t['estimate']}" for t in top.get("top", []))
    return (f"window ending {time.strftime('%H:%M:%S', time.localtime(window / 1000))}: "
            f"{int(latency['n'])} events | distinct devices ~{distinct['distinct']:.0f} [{low:.0f}, {high:.0f}] | "
            f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms | top {heavy} | "
            f"count-min {heaviest}: {counts['estimate']:.0f} (true count in [{counts['lower']:.0f}, {counts['upper']:.0f}])")


def run_iot(a: argparse.Namespace) -> int:
    c = SketchesClient(a.admin_url)
    try:
        code = _produce_and_report(c, a)
    finally:
        # Also after an error or ^C: a demo leaves nothing deployed unless asked to.
        cleaned = a.keep or _delete_sketches(c)
        c.close()
    return code if cleaned else 1


def _produce_and_report(c: SketchesClient, a: argparse.Namespace) -> int:
    import pulsar

    topic = f"persistent://public/default/{TOPIC}"
    client = None
    try:
        _deploy(c, topic, a.window_ms, a.parallelism)
        client = pulsar.Client(a.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
        producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=10)
        rng = np.random.default_rng(a.seed)
        print(f"producing ~{a.rate} events/s for {a.duration_s} s ({a.devices} devices, Zipf ids); "
              f"answers per {a.window_ms} ms window:", flush=True)
        started = time.monotonic()
        shown: set[int] = set()
        tick = 0.1
        while time.monotonic() - started < a.duration_s + (a.window_ms + 3000) / 1000:
            if time.monotonic() - started < a.duration_s:
                for payload in events(rng, max(int(a.rate * tick), 1), a.devices):
                    producer.send_async(payload, None)
            time.sleep(tick)
            windows = c.get("iot-latency")["windows"]
            for window in windows:
                if window not in shown and all(window in c.get(n)["windows"] for n in SKETCHES):
                    shown.add(window)
                    print(_report(c, window), flush=True)
        producer.flush()
        if not shown:
            print("no window was merged in time (is the functions worker running with state?)", file=sys.stderr)
            return 1
        return 0
    except (SketchError, pulsar.PulsarException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()


def _delete_sketches(c: SketchesClient) -> bool:
    """Delete the demo's sketches; a line per one that could not be (it stays deployed)."""
    deleted = True
    for name in SKETCHES:
        try:
            c.delete(name)
        except SketchesClientError as exc:
            if exc.status != 404:  # 404: never deployed (the demo stopped early), nothing to do
                print(f"error: could not delete sketch {name}: {exc}", file=sys.stderr)
                deleted = False
    return deleted


def register(sub) -> None:
    p = sub.add_parser("demo", help="runnable demos against a running standalone")
    demos = p.add_subparsers(dest="demo", metavar="DEMO")
    demos.required = True
    d = demos.add_parser("iot", help="sensor events -> count-min, frequent-items, hll, kll sketches, live answers")
    d.add_argument("--admin-url", default=os.environ.get("TAUREAU_ADMIN_URL", "http://localhost:8080"))
    d.add_argument("--service-url", default=os.environ.get("TAUREAU_SERVICE_URL", "pulsar://localhost:6650"))
    d.add_argument("--duration-s", type=float, default=30.0, help="how long to produce (default 30)")
    d.add_argument("--rate", type=int, default=2000, help="events per second (default 2000)")
    d.add_argument("--devices", type=int, default=10_000, help="device ids (default 10000)")
    d.add_argument("--window-ms", type=int, default=5000, help="sketch window (default 5000)")
    d.add_argument("--parallelism", type=int, default=1, help="instances per sketch function (default 1)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument("--keep", action="store_true", help="leave the sketches deployed at the end")
    d.set_defaults(func=run_iot)
