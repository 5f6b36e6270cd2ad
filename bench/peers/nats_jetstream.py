"""NATS JetStream with file storage (Debian's nats-server, nats-py): publish, pull-consume, ack;
the e2e-latency consumer is a push consumer (messages come as they are stored, no fetch wait).

Durability: Debian bookworm ships nats-server 2.9.10, which has no `sync_interval` option (it
came in 2.10): a JetStream publish ack means the message was written to the OS, and the file
store fsyncs on its own timer (every 2 minutes). NATS acks are therefore not durable against a
machine crash, unlike Taureau's and Redis' (appendfsync always) in this benchmark.
Batched = publish_async with up to WINDOW acks in flight, waiting for them every BATCH
messages; unbatched = one publish at a time, each awaited before the next. Several topics are
subjects <stream>.<k> of the pair's one stream.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import time
from pathlib import Path

from . import base
from .base import Server, payload, stamped, topic_names
from .runner import Job, Receipts, WorkerResult

NAME = "nats"
BATCH = 1000  # publishes between waits for their acks, batched
WINDOW = 4000  # publish_async acks in flight at most
FETCH = 1000  # messages per pull-consumer fetch
ACK_EVERY = 100  # e2e-latency consumer: one ack (AckPolicy.ALL) per this many messages


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
    subjects = topic_names(job.stream, job.topics, sep=".")
    wildcard = [job.stream] if job.topics == 1 else [f"{job.stream}.*"]
    config = StreamConfig(name=job.stream, subjects=wildcard, storage=StorageType.FILE)
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
        if job.role == "receive":
            return await _receive(js, wildcard[0], job, barrier)
        if job.link:  # the consumer of an e2e-latency pair must see the warm-up
            job.link.wait_subscribed(barrier)
        warmup = itertools.islice(itertools.cycle(subjects), base.window(base.WARMUP_MESSAGES, job.size))
        await _publish(js, list(warmup), True, payload(job.size))
        if job.role == "produce":
            return await _produce(js, job, barrier)
        return await _latency(js, subjects, job, barrier)
    finally:
        await nc.close()


async def _publish(js, subjects: list[str], batched: bool, data: bytes) -> None:
    """One publish to each of `subjects` (a subject may repeat)."""
    if not batched:
        for subject in subjects:
            await js.publish(subject, data)
        return
    futures = [await js.publish_async(subject, data) for subject in subjects]
    await asyncio.gather(*futures)


async def _produce(js, job: Job, barrier) -> WorkerResult:
    per_round = [job.stream] * (base.window(BATCH, job.size) if job.batched else 1)
    data = payload(job.size)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    deadline, count = t0 + job.duration, 0
    while time.perf_counter() < deadline:
        await _publish(js, per_round, job.batched, data)
        count += len(per_round)
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


async def _latency(js, subjects: list[str], job: Job, barrier) -> WorkerResult:
    """Paced at job.rate, round-robin over `subjects`; latency from each publish call to its
    ack. Each payload carries its send time, for the consumer of an e2e-latency pair."""
    latencies: list[float] = []
    pending: list = []
    targets = itertools.cycle(subjects)
    data = payload(job.size)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for due in base.due_counts(job.rate, job.duration):
        if not due:
            await asyncio.sleep(base.TICK)
        for _ in range(due):
            sent = time.perf_counter()
            message = stamped(data, time.monotonic_ns())
            if job.batched:
                fut = await js.publish_async(next(targets), message)
                fut.add_done_callback(lambda _f, s=sent: latencies.append(time.perf_counter() - s))
                pending.append(fut)
            else:
                await js.publish(next(targets), message)
                latencies.append(time.perf_counter() - sent)
    await asyncio.gather(*pending)
    if job.link:
        job.link.report_sent(len(latencies))
    return WorkerResult(len(latencies), time.perf_counter() - t0, time.process_time() - c0, latencies)


async def _receive(js, subject: str, job: Job, barrier) -> WorkerResult:
    """The consumer of an e2e-latency pair: a push consumer on all the pair's subjects, each
    message taken in the subscription's callback; one ack (AckPolicy.ALL) per ACK_EVERY."""
    from nats.js.api import AckPolicy, ConsumerConfig

    tally = Receipts(job, barrier)
    seen = itertools.count(1)

    async def on_message(msg) -> None:
        tally.add([msg.data])
        if next(seen) % ACK_EVERY == 0:
            await msg.ack()

    config = ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=-1)
    await js.subscribe(subject, stream=job.stream, cb=on_message, manual_ack=True, config=config)
    tally.ready()
    while tally.warming():  # the callback counts the warm-up meanwhile
        await asyncio.sleep(0.01)
    tally.start()  # blocks the loop at the barrier: nothing is sent before everyone is there
    while tally.receiving():
        await asyncio.sleep(0.01)
    return tally.result()
