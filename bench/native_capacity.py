"""Taureau against Apache Pulsar under a native load generator: the Go client's perf tool.

The official Python client caps what a 2-core machine can offer (docs/performance.md); the Go
client's `perf` tool costs far less per message. For each broker in turn (a fresh standalone,
fsync on in both) it runs PAIRS producer and consumer processes, one topic per pair, unthrottled,
for --seconds, and reports the perf tool's own figures (10 s intervals; the first is dropped as
warm-up) with the broker's CPU, then Taureau's ratio to Pulsar.

    python bench/native_capacity.py                       # 100-byte messages, batches of 1000
    python bench/native_capacity.py --batch 1 --seconds 40  # one message per entry
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `peers`
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.e2e.harness`

from peers import pulsar_perf, pulsar_server  # noqa: E402
from peers.base import process_cpu_seconds  # noqa: E402

from tests.e2e.harness import Standalone  # noqa: E402


def start(broker: str, workdir: Path):
    """(service URL, pid, stop) of a fresh standalone of `broker`."""
    if broker == "taureau":
        server = Standalone(workdir).start()
        return server.service_url, server.proc.pid, server.stop
    server = pulsar_server.start(workdir)
    return server.service_url, server.proc.pid, server.stop


def measure(broker: str, args: argparse.Namespace) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix=f"native-{broker}-"))
    url, pid, stop = start(broker, workdir)
    procs, logs = [], []
    try:
        for pair in range(args.pairs):
            topic = f"persistent://public/default/native-{pair}"
            for role in ("consumer", "producer"):
                log = workdir / f"{role}-{pair}.log"
                logs.append((role, log))
                if role == "consumer":
                    procs.append(pulsar_perf.consumer(url, topic, log))
                    time.sleep(1.0)  # subscribed before the producer starts
                else:
                    procs.append(pulsar_perf.producer(url, topic, args.size, args.batch, log))
        time.sleep(pulsar_perf.INTERVAL_S)  # the first interval is warm-up
        cpu0, t0 = process_cpu_seconds(pid), time.monotonic()
        time.sleep(args.seconds)
        broker_cpu = (process_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        time.sleep(2)  # the tools print each interval's line just after it ends
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        stop()
    reports = [(role, pulsar_perf.parse(log.read_text(errors="replace"))) for role, log in logs]
    steady = slice(1, None)  # drop the warm-up interval
    publish = sum(statistics.mean(r.publish[steady] or [0]) for role, r in reports if role == "producer")
    consume = sum(statistics.mean(r.consume[steady] or [0]) for role, r in reports if role == "consumer")
    p50 = max(
        statistics.median(r.p50_ms[steady] or [float("nan")]) for role, r in reports if role == "producer"
    )
    p99 = max(
        statistics.median(r.p99_ms[steady] or [float("nan")]) for role, r in reports if role == "producer"
    )
    return {"publish": publish, "consume": consume, "p50_ms": p50, "p99_ms": p99, "broker_cpu": broker_cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=1, help="producer/consumer process pairs (one topic each)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="messages per batch at most (1 = unbatched)")
    parser.add_argument("--size", type=int, default=100, help="bytes per message")
    parser.add_argument(
        "--seconds", type=int, default=30, help="measured time after a 10 s warm-up (whole 10 s intervals)"
    )
    parser.add_argument("--only", choices=["taureau", "pulsar"], help="one broker only")
    args = parser.parse_args()
    args.seconds = max(1, round(args.seconds / pulsar_perf.INTERVAL_S)) * pulsar_perf.INTERVAL_S
    for why in (pulsar_perf.missing(), None if args.only == "taureau" else pulsar_server.missing()):
        if why:
            print(why, file=sys.stderr)
            return 2
    brokers = [args.only] if args.only else ["taureau", "pulsar"]
    results = {b: measure(b, args) for b in brokers}
    print(
        f"pulsar-perf-go (pulsar-client-go), {args.pairs} pair(s), {args.size} B, batches <= {args.batch}, "
        f"{args.seconds} s measured, fsync on; broker CPU in % of one core"
    )
    print(f"{'broker':<9} {'publish/s':>12} {'consume/s':>12} {'p50 ms':>8} {'p99 ms':>8} {'CPU':>6}")
    for broker, r in results.items():
        print(
            f"{broker:<9} {r['publish']:>12,.0f} {r['consume']:>12,.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}"
            f" {r['broker_cpu']:>6.0%}"
        )
    if len(results) == 2:
        t, p = results["taureau"], results["pulsar"]
        print(
            f"taureau / pulsar: publish {t['publish'] / p['publish']:.2f}x, consume {t['consume'] / p['consume']:.2f}x,"
            f" p99 {p['p99_ms'] / t['p99_ms']:.2f}x (pulsar p99 / taureau p99), CPU {t['broker_cpu'] / p['broker_cpu']:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
