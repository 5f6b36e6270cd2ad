"""The Go client's own load generator (pulsar-client-go's `perf`, "pulsar-perf-go"), built from
the Go module proxy by pulsar_perf/go.mod, run as producer and consumer processes.

It prints one stats line every 10 s (to stderr, through logrus):
    Stats - Publish rate: 123.4 msg/s - ... Latency ms: 50% 1.2 -95% ... - 99% 3.4 ...
    Stats - Consume rate: 123.4 msg/s - ...
parse() turns those lines into numbers.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import pulsar_toolchain

MODULE = Path(__file__).with_name("pulsar_perf")
PACKAGE = "github.com/apache/pulsar-client-go/perf"
INTERVAL_S = 10  # the tool's fixed reporting interval
PUBLISH = re.compile(r"Publish rate:\s*([\d.]+) msg/s.*?50%\s*([\d.]+).*?99%\s*([\d.]+)", re.S)
CONSUME = re.compile(r"Consume rate:\s*([\d.]+) msg/s")


def missing() -> str | None:
    absent = pulsar_toolchain.missing_tools("go")
    return f"the Go perf tool needs Go: {absent}" if absent else None


def binary() -> Path:
    return pulsar_toolchain.go_build(MODULE, PACKAGE, "pulsar-perf-go")


def producer(service_url: str, topic: str, size: int, batch: int, log: Path) -> subprocess.Popen:
    """Unthrottled producer; batches of up to `batch` messages or 1 ms (1 = one per entry)."""
    cmd = [str(binary()), "produce", topic, "-u", service_url, "--metrics", "-1", "-r", "0", "-s", str(size)]
    cmd += ["--batching-num-messages", str(batch), "-q", "10000"]
    return _spawn(cmd, log)


def consumer(service_url: str, topic: str, log: Path) -> subprocess.Popen:
    cmd = [str(binary()), "consume", topic, "-u", service_url, "--metrics", "-1", "-r", "10000"]
    return _spawn(cmd, log)


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Report:
    publish: list[float]  # msgs/s per interval
    p50_ms: list[float]
    p99_ms: list[float]
    consume: list[float]


def parse(text: str) -> Report:
    publish = [tuple(map(float, m)) for m in PUBLISH.findall(text)]
    return Report(
        [p[0] for p in publish],
        [p[1] for p in publish],
        [p[2] for p in publish],
        [float(c) for c in CONSUME.findall(text)],
    )
