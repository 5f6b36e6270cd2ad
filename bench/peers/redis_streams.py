"""Redis Streams (Debian's redis-server, redis-py): XADD to produce, XREADGROUP + XACK to consume.

Durability matches Taureau's default: appendonly yes, appendfsync always (Redis fsyncs the
AOF before it replies to the commands of one event-loop turn, a group commit like Taureau's
journal). Batched = pipelines of PIPELINE XADDs per round trip; unbatched = one XADD per round
trip (redis-py has no sliding window: a pipeline is Redis' only way to have several in flight).
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

from .base import (
    LARGE,
    POLL,
    TICK,
    WARMUP_MESSAGES,
    Server,
    due_counts,
    free_port,
    payload,
    spawn,
    stamped,
    topic_names,
    wait_for_port,
    window,
)
from .runner import Job, WorkerResult, receive_timed

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


def _send(r, streams: list[str], job: Job, stamp: bool = False) -> None:
    """One XADD to each of `streams` (a name may repeat), in one pipeline when more than one;
    with `stamp`, each payload carries the time of its XADD call."""
    data = payload(job.size)
    maxlen = STREAM_BYTES // job.size if job.size >= LARGE else None
    pipe = r.pipeline(transaction=False) if len(streams) > 1 else r
    for stream in streams:
        pipe.xadd(stream, {b"d": stamped(data, time.monotonic_ns()) if stamp else data}, maxlen=maxlen)
    if pipe is not r:
        pipe.execute()


def _create_group(r, stream: str) -> None:
    """The consumer group, at the stream's end ($): a consumer reads only what comes after."""
    import redis

    try:
        r.xgroup_create(stream, "bench", id="$", mkstream=True)
    except redis.ResponseError:
        pass  # group exists


def _produce(r, job: Job, barrier) -> WorkerResult:
    per_trip = [job.stream] * (window(PIPELINE, job.size) if job.batched else 1)
    _send(r, [job.stream] * window(WARMUP_MESSAGES, job.size), job)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline, count = t0 + job.duration, 0
    while time.perf_counter() < deadline:
        _send(r, per_trip, job)
        count += len(per_trip)
    return WorkerResult(count, time.perf_counter() - t0, time.process_time() - c0)


def _consume(r, job: Job, barrier) -> WorkerResult:
    _create_group(r, job.stream)
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
    """Paced at job.rate, round-robin over the job's streams: batched sends the messages due in
    one pipeline, unbatched one XADD per round trip; each message's latency runs from the send
    call to its reply. Each payload carries its send time, for the consumer of an e2e-latency
    pair (job.link), which creates its group before this warm-up so the warm-up reaches it."""
    targets = itertools.cycle(topic_names(job.stream, job.topics))
    if job.link:
        job.link.wait_subscribed(barrier)
    _send(r, [next(targets) for _ in range(window(WARMUP_MESSAGES, job.size))], job)
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
            _send(r, [next(targets) for _ in range(n)], job, stamp=True)
            latencies += [time.perf_counter() - sent] * n
    if job.link:
        job.link.report_sent(len(latencies))
    return WorkerResult(len(latencies), time.perf_counter() - t0, time.process_time() - c0, latencies)


def _receive(r, job: Job, barrier) -> WorkerResult:
    """The consumer of an e2e-latency pair: XREADGROUP ... COUNT ... BLOCK over all the pair's
    streams at once; the XACKs of one read travel in the same round trip as the next read."""
    streams = dict.fromkeys(topic_names(job.stream, job.topics), ">")
    for stream in streams:
        _create_group(r, stream)
    unacked: list[tuple[bytes, list[bytes]]] = []

    def poll() -> list[bytes]:
        pipe = r.pipeline(transaction=False)
        for stream, ids in unacked:
            pipe.xack(stream, "bench", *ids)
        pipe.xreadgroup("bench", "c", streams, count=READ_COUNT, block=int(POLL * 1000))
        reply = pipe.execute()[-1] or []
        unacked[:] = [(stream, [entry_id for entry_id, _ in entries]) for stream, entries in reply]
        return [fields[b"d"] for _, entries in reply for _, fields in entries]

    return receive_timed(job, barrier, poll)


ROLES = {"produce": _produce, "consume": _consume, "latency": _latency, "receive": _receive}
