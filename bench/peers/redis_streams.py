"""Redis Streams (Debian's redis-server, redis-py): XADD to produce, XREADGROUP + XACK to consume.

Durability matches Taureau's default: appendonly yes, appendfsync always (Redis fsyncs the
AOF before it replies to the commands of one event-loop turn, a group commit like Taureau's
journal). Batched = pipelines of PIPELINE XADDs per round trip; unbatched = one XADD per round
trip (redis-py has no sliding window: a pipeline is Redis' only way to have several in flight).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from .base import (
    LARGE,
    TICK,
    WARMUP_MESSAGES,
    Server,
    due_counts,
    free_port,
    payload,
    spawn,
    wait_for_port,
    window,
)
from .runner import Job, WorkerResult

NAME = "redis"
PIPELINE = 1000  # XADDs per pipelined round trip when batched
READ_COUNT = 1000  # XREADGROUP COUNT
# Redis holds a stream in memory: past 64 KiB per message each stream is capped near
# STREAM_BYTES (XADD MAXLEN ~), or a 5 s cell of 1 MiB messages would hold gigabytes.
STREAM_BYTES = 256 * 1024 * 1024


def missing() -> str | None:
    if shutil.which("redis-server"):
        return None
    return "redis-server not found: sudo apt-get install redis-server"


def start(workdir: Path, appendfsync: str = "always") -> Server:
    port = free_port()
    cmd = [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    cmd += ["--appendonly", "yes", "--appendfsync", appendfsync, "--save", ""]
    proc = spawn(cmd, workdir / "redis.log")
    wait_for_port(port)
    settings = {"AOF": f"appendonly yes, appendfsync {appendfsync}"}
    name = NAME if appendfsync == "always" else f"{NAME} ({appendfsync})"
    return Server(name, proc, f"redis://127.0.0.1:{port}", workdir / "redis.log", settings)


def run(job: Job, barrier) -> WorkerResult:
    import redis

    r = redis.Redis.from_url(job.address)
    try:
        return ROLES[job.role](r, job, barrier)
    finally:
        r.close()


def _send(r, n: int, job: Job) -> None:
    fields = {b"d": payload(job.size)}
    maxlen = STREAM_BYTES // job.size if job.size >= LARGE else None
    if n == 1:
        r.xadd(job.stream, fields, maxlen=maxlen)
        return
    pipe = r.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd(job.stream, fields, maxlen=maxlen)
    pipe.execute()


def _produce(r, job: Job, barrier) -> WorkerResult:
    per_trip = window(PIPELINE, job.size) if job.batched else 1
    _send(r, window(WARMUP_MESSAGES, job.size), job)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline, count = t0 + job.duration, 0
    while time.perf_counter() < deadline:
        _send(r, per_trip, job)
        count += per_trip
    return WorkerResult(count, time.perf_counter() - t0, time.process_time() - c0)


def _consume(r, job: Job, barrier) -> WorkerResult:
    import redis

    try:
        r.xgroup_create(job.stream, "bench", id="$", mkstream=True)
    except redis.ResponseError:
        pass  # group exists
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline, count, last = t0 + job.duration, 0, t0
    while time.perf_counter() < deadline:
        reply = r.xreadgroup("bench", "c", {job.stream: ">"}, count=window(READ_COUNT, job.size), block=5)
        if reply:
            ids = [entry_id for entry_id, _ in reply[0][1]]
            r.xack(job.stream, "bench", *ids)
            count += len(ids)
            last = time.perf_counter()
    return WorkerResult(count, last - t0, time.process_time() - c0)


def _latency(r, job: Job, barrier) -> WorkerResult:
    """Paced at job.rate: batched sends the messages due in one pipeline, unbatched one
    XADD per round trip; each message's latency runs from the send call to its reply."""
    _send(r, window(WARMUP_MESSAGES, job.size), job)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    latencies = []
    for due in due_counts(job.rate, job.duration):
        if not due:
            time.sleep(TICK)
            continue
        batches = [due] if job.batched else [1] * due
        for n in batches:
            sent = time.perf_counter()
            _send(r, n, job)
            latencies += [time.perf_counter() - sent] * n
    return WorkerResult(len(latencies), time.perf_counter() - t0, time.process_time() - c0, latencies)


ROLES = {"produce": _produce, "consume": _consume, "latency": _latency}
