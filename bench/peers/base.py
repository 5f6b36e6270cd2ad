"""Plumbing every peer shares: free ports, server processes, CPU sampling, pacing, send stamps,
percentiles."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from taureau.testing.ports import free_port  # noqa: F401  (re-exported for the peers)

PAYLOAD = b"x" * 100  # every workload sends 100-byte messages unless --size says otherwise
WINDOW_BYTES = 16 * 1024 * 1024  # large messages: what a client may queue or pipeline at once
LARGE = 64 * 1024  # from this message size on: no latency cells, Redis streams capped
LATENCY_RATE = 10_000  # offered rate of the latency workload, msgs/s
WARMUP_MESSAGES = 2_000  # sent by each producer before the clock starts
CLK_TCK = os.sysconf("SC_CLK_TCK")
TICK = 0.0005  # seconds a paced sender sleeps when no send is due
STAMP_BYTES = 8  # e2e-latency: the send time at the head of each payload
SETUP_TIMEOUT = 300.0  # seconds a cell may take to set up (1,000 topics on Pulsar take a while)
DRAIN = 10.0  # e2e-latency: seconds a consumer keeps receiving after its producer's last send
POLL = 0.05  # e2e-latency: seconds a consumer waits for a message before it looks at the clock


def payload(size: int) -> bytes:
    return PAYLOAD if size == len(PAYLOAD) else b"x" * size


def window(count: int, size: int) -> int:
    """`count` messages (a pipeline, a warm-up, a client queue sized for 100-byte ones), cut to
    WINDOW_BYTES for large messages: 1,000 pending 1 MiB sends would be a gigabyte per client."""
    return max(4, min(count, WINDOW_BYTES // size))


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Server:
    """A server process this benchmark started; `address` is what the peer's clients dial."""

    name: str
    proc: subprocess.Popen
    address: str
    log: Path
    settings: dict[str, str] = field(default_factory=dict)  # durability and tuning, printed
    admin_url: str | None = None  # Taureau's web port: its loop-lag and collector histograms

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def spawn(cmd: list[str], log: Path, **kwargs) -> subprocess.Popen:
    """Start a server with stdout and stderr in `log`, in its own process group."""
    out = log.open("wb")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuSampler:
    """CPU used by the server process and by the whole machine between start() and stop()."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.server0 = process_cpu_seconds(self.server_pid)
        self.busy0, self.total0 = machine_busy_seconds()

    def stop(self) -> tuple[float, float, float]:
        """Return (wall seconds, server CPU seconds, machine busy CPU seconds)."""
        wall = time.perf_counter() - self.t0
        server = process_cpu_seconds(self.server_pid) - self.server0
        busy, _ = machine_busy_seconds()
        return wall, server, busy - self.busy0


def due_counts(rate: float, duration: float):
    """Yield how many sends are due now, to offer `rate` msgs/s for `duration` s; 0 means none
    is due, and the caller sleeps for TICK (time.sleep or asyncio.sleep, as its loop needs).

    A sender that falls behind gets a larger count next time (it catches up, nothing skipped).
    Latency is measured from each actual send call to its acknowledgement.
    """
    start = time.perf_counter()
    total = int(rate * duration)
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        yield due - sent
        sent = due


def topic_names(stream: str, topics: int, sep: str = "-") -> list[str]:
    """The topics (streams, subjects) one producer spreads its messages over: the pair's own
    name alone when it has one, else that name with a suffix per topic."""
    if topics == 1:
        return [stream]
    return [f"{stream}{sep}{k}" for k in range(topics)]


def stamped(data: bytes, ns: int) -> bytes:
    """`data` with its first STAMP_BYTES replaced by `ns`, a time.monotonic_ns() reading.

    CLOCK_MONOTONIC is one clock for the whole machine on Linux (not per process), so a
    consumer process may subtract a producer process's reading from its own."""
    return ns.to_bytes(STAMP_BYTES, "little") + data[STAMP_BYTES:]


def sent_ns(data: bytes) -> int:
    """The time.monotonic_ns() a stamped() payload was sent at."""
    return int.from_bytes(data[:STAMP_BYTES], "little")


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def latency_ms(latencies: list[float]) -> tuple[float, float, float, float]:
    """p50, p99, p99.9 and max in milliseconds of latencies in seconds (any order; all the
    workers' of a cell together: a percentile of per-worker percentiles would be no percentile)."""
    ordered = sorted(latencies)
    p50, p99, p999, top = (1000 * percentile(ordered, p) for p in (50, 99, 99.9, 100))
    return p50, p99, p999, top
