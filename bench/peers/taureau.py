"""Taureau standalone driven by the official Pulsar Python client (pulsar-client)."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from pathlib import Path

from .base import (
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
    window,
)
from .runner import Job, WorkerResult, receive_timed

NAME = "taureau"
BATCH_MAX_MESSAGES = 1000  # client batch: at most 1000 messages ...
BATCH_MAX_DELAY_MS = 1  # ... or 1 ms, whichever comes first
UNBATCHED_WINDOW = 1000  # messages in flight with batching off (max_pending_messages)


def missing() -> str | None:
    return None  # runs from this checkout's interpreter


def start(workdir: Path, fsync: bool = True) -> Server:
    """Start `taureau standalone` on free loopback ports and wait for its ready line."""
    port, web = free_port(), free_port()
    log = workdir / "taureau.log"
    cmd = [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(workdir / "data")]
    cmd += ["--broker-port", str(port), "--web-port", str(web), "--no-state"]
    cmd += ["--bind-address", "127.0.0.1", "--advertised-address", "127.0.0.1"]
    if not fsync:
        cmd.append("--no-journal-fsync")
    proc = spawn(cmd, log)
    deadline = time.monotonic() + 60
    while "Taureau standalone ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"taureau standalone did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    settings = {"journal": "fsync before every send receipt" if fsync else "NO fsync (--no-journal-fsync)"}
    name = NAME if fsync else f"{NAME} (no fsync)"
    return Server(name, proc, f"pulsar://127.0.0.1:{port}", log, settings, admin_url=f"http://127.0.0.1:{web}")


def client(address: str):
    import pulsar

    # The C++ client logs every pending send it drops at close: send its log nowhere. (Not a
    # Python logger: that is called from the client's threads and can abort the interpreter
    # at exit with "terminate called without an active exception".)
    quiet = pulsar.FileLogger(pulsar.LoggerLevel.Error, os.devnull)
    # 120 s for a lookup or a subscribe: on a busy machine Apache Pulsar standalone took over
    # 60 s to subscribe one multi-topic consumer to 500 new topics (--topics 1000).
    return pulsar.Client(address, io_threads=1, operation_timeout_seconds=120, logger=quiet)


def producer(c, topic: str, batched: bool, size: int):
    return c.create_producer(
        topic,
        batching_enabled=batched,
        batching_max_messages=BATCH_MAX_MESSAGES,
        batching_max_allowed_size_in_bytes=1024 * 1024,
        batching_max_publish_delay_ms=BATCH_MAX_DELAY_MS,
        max_pending_messages=window(10 * BATCH_MAX_MESSAGES if batched else UNBATCHED_WINDOW, size),
        block_if_queue_full=True,
    )


def run(job: Job, barrier) -> WorkerResult:
    c = client(job.address)
    try:
        return ROLES[job.role](c, job, barrier)
    finally:
        c.close()


def _produce(c, job: Job, barrier) -> WorkerResult:
    p = producer(c, job.stream, job.batched, job.size)
    data = payload(job.size)
    acked = [0]
    last = [0.0]

    def on_ack(res, _msg_id) -> None:
        acked[0] += 1
        last[0] = time.perf_counter()

    for _ in range(window(WARMUP_MESSAGES, job.size)):
        p.send_async(data, on_ack)
    p.flush()
    barrier.wait()
    acked[0] = 0
    t0, c0 = time.perf_counter(), time.process_time()
    deadline = t0 + job.duration
    send = p.send_async
    while time.perf_counter() < deadline:
        for _ in range(200):
            send(data, on_ack)
    p.flush()
    return WorkerResult(acked[0], last[0] - t0, time.process_time() - c0)


def _consume(c, job: Job, barrier) -> WorkerResult:
    import pulsar

    consumer = c.subscribe(
        job.stream,
        "bench",
        consumer_type=pulsar.ConsumerType.Exclusive,
        receiver_queue_size=window(10_000, job.size),
        batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(1000, -1, 5),
    )
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline = t0 + job.duration
    count, last = 0, t0
    while time.perf_counter() < deadline:
        msgs = consumer.batch_receive()
        if len(msgs):
            count += len(msgs)
            last = time.perf_counter()
            consumer.acknowledge_cumulative(msgs[len(msgs) - 1])
    return WorkerResult(count, last - t0, time.process_time() - c0)


def _latency(c, job: Job, barrier) -> WorkerResult:
    """Paced at job.rate, round-robin over the job's topics (a producer each); latency from each
    send call to its acknowledgement. Each payload carries its send time, for the consumer of an
    e2e-latency pair (job.link), which subscribes before this warm-up so the warm-up reaches it."""
    producers = [producer(c, topic, job.batched, job.size) for topic in topic_names(job.stream, job.topics)]
    data = payload(job.size)
    latencies: list[float] = []
    lock = threading.Lock()

    def sent_at(ns: int):
        def on_ack(res, _msg_id) -> None:
            with lock:
                latencies.append((time.monotonic_ns() - ns) / 1e9)

        return on_ack

    if job.link:
        job.link.wait_subscribed(barrier)
    targets = itertools.cycle(producers)
    for _ in range(window(WARMUP_MESSAGES, job.size)):
        next(targets).send_async(data, lambda res, mid: None)
    for p in producers:
        p.flush()
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    sent = 0
    for n in due_counts(job.rate, job.duration):
        if not n:
            time.sleep(TICK)
        for _ in range(n):
            ns = time.monotonic_ns()
            next(targets).send_async(stamped(data, ns), sent_at(ns))
        sent += n
    for p in producers:
        p.flush()
    if job.link:
        job.link.report_sent(sent)
    return WorkerResult(len(latencies), time.perf_counter() - t0, time.process_time() - c0, latencies)


def _receive(c, job: Job, barrier) -> WorkerResult:
    """The consumer of an e2e-latency pair: receive() one message at a time with the default
    receiver queue (1,000 per topic), as a latency-minded application would; each message is
    acknowledged individually, on the next call (the client groups acknowledgements)."""
    import pulsar

    topics = topic_names(job.stream, job.topics)
    # One consumer over all the topics: the client's multi-topic consumer (a consumer per topic
    # inside it, one receive queue in front).
    consumer = c.subscribe(
        topics if len(topics) > 1 else topics[0], "bench", consumer_type=pulsar.ConsumerType.Exclusive
    )
    unacked: list = []

    def poll() -> list[bytes]:
        if unacked:
            consumer.acknowledge(unacked.pop())
        try:
            msg = consumer.receive(int(POLL * 1000))
        except pulsar.Timeout:
            return []
        unacked.append(msg)
        return [msg.data()]

    return receive_timed(job, barrier, poll)


ROLES = {"produce": _produce, "consume": _consume, "latency": _latency, "receive": _receive}
