"""NATS JetStream with file storage (Debian's nats-server, nats-py): publish, pull-consume, ack.

Durability: Debian bookworm ships nats-server 2.9.10, which has no `sync_interval` option (it
came in 2.10): a JetStream publish ack means the message was written to the OS, and the file
store fsyncs on its own timer (every 2 minutes). NATS acks are therefore not durable against a
machine crash, unlike Taureau's and Redis' (appendfsync always) in this benchmark.
Batched = publish_async with up to WINDOW acks in flight, waiting for them every BATCH
messages; unbatched = one publish at a time, each awaited before the next.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from . import base
from .base import Server, payload
from .runner import Job, WorkerResult

NAME = "nats"
BATCH = 1000  # publishes between waits for their acks, batched
WINDOW = 4000  # publish_async acks in flight at most
FETCH = 1000  # messages per pull-consumer fetch


def missing() -> str | None:
    if shutil.which("nats-server"):
        return None
    return "nats-server not found: sudo apt-get install nats-server"


def start(workdir: Path) -> Server:
    port = base.free_port()
    conf = workdir / "nats.conf"
    conf.write_text(
        f'listen: 127.0.0.1:{port}\njetstream {{ store_dir: "{workdir / "js"}" }}\nmax_payload: 1MB\n'
    )
    proc = base.spawn([shutil.which("nats-server"), "-c", str(conf)], workdir / "nats.log")
    base.wait_for_port(port)
    settings = {"JetStream": "file storage; acks after write(2), fsync on a 2-minute timer (2.9.10)"}
    return Server(NAME, proc, f"nats://127.0.0.1:{port}", workdir / "nats.log", settings)


def run(job: Job, barrier) -> WorkerResult:
    return asyncio.run(_run(job, barrier))


async def _run(job: Job, barrier) -> WorkerResult:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

    nc = await nats.connect(job.address)
    js = nc.jetstream(publish_async_max_pending=WINDOW)
    config = StreamConfig(name=job.stream, subjects=[job.stream], storage=StorageType.FILE)
    try:
        await js.add_stream(config)
    except Exception:
        await js.update_stream(config)  # the other worker of the pair created it first
    try:
        if job.role == "consume":
            sub = await js.pull_subscribe(
                job.stream, "bench", config=ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=-1)
            )
            return await _consume(sub, job, barrier)
        await _publish(js, job.stream, base.window(base.WARMUP_MESSAGES, job.size), True, payload(job.size))
        if job.role == "produce":
            return await _produce(js, job, barrier)
        return await _latency(js, job, barrier)
    finally:
        await nc.close()


async def _publish(js, subject: str, n: int, batched: bool, data: bytes) -> None:
    if not batched:
        for _ in range(n):
            await js.publish(subject, data)
        return
    futures = [await js.publish_async(subject, data) for _ in range(n)]
    await asyncio.gather(*futures)


async def _produce(js, job: Job, barrier) -> WorkerResult:
    per_round = base.window(BATCH, job.size) if job.batched else 1
    data = payload(job.size)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline, count = t0 + job.duration, 0
    while time.perf_counter() < deadline:
        await _publish(js, job.stream, per_round, job.batched, data)
        count += per_round
    return WorkerResult(count, time.perf_counter() - t0, time.process_time() - c0)


async def _consume(sub, job: Job, barrier) -> WorkerResult:
    import nats

    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline, count, last = t0 + job.duration, 0, t0
    while time.perf_counter() < deadline:
        try:
            msgs = await sub.fetch(FETCH, timeout=0.05)
        except (TimeoutError, nats.errors.TimeoutError):
            continue  # nothing arrived within the fetch timeout
        if not msgs:
            continue
        await msgs[-1].ack()  # AckPolicy.ALL: acknowledges the whole fetch
        count += len(msgs)
        last = time.perf_counter()
    return WorkerResult(count, last - t0, time.process_time() - c0)


async def _latency(js, job: Job, barrier) -> WorkerResult:
    """Paced at job.rate; latency from each publish call to its ack."""
    latencies: list[float] = []
    pending: list = []
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for due in base.due_counts(job.rate, job.duration):
        if not due:
            await asyncio.sleep(base.TICK)
        for _ in range(due):
            sent = time.perf_counter()
            if job.batched:
                fut = await js.publish_async(job.stream, payload(job.size))
                fut.add_done_callback(lambda _f, s=sent: latencies.append(time.perf_counter() - s))
                pending.append(fut)
            else:
                await js.publish(job.stream, payload(job.size))
                latencies.append(time.perf_counter() - sent)
    await asyncio.gather(*pending)
    return WorkerResult(len(latencies), time.perf_counter() - t0, time.process_time() - c0, latencies)
