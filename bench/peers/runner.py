"""Run one benchmark cell: worker processes behind a barrier, server CPU sampled over the window."""

from __future__ import annotations

import importlib
import multiprocessing as mp
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .base import (
    DRAIN,
    SETUP_TIMEOUT,
    WARMUP_MESSAGES,
    CpuSampler,
    Server,
    latency_ms,
    sent_ns,
    window,
)

# The workers whose results make a workload's row: rate and latencies come from them.
COUNTED = {"produce": "produce", "e2e": "consume", "latency": "latency", "e2e-latency": "receive"}


class Link:
    """What the two processes of an e2e-latency pair tell each other: the consumer, that it has
    subscribed (the producer's warm-up must reach it); the producer, how many messages it sent
    after the barrier (the consumer stops when it has them all)."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")  # run_jobs' context: these travel in the Process args
        self.subscribed = ctx.Event()
        self.sent = ctx.Value("q", -1, lock=False)  # -1 while the producer is still sending

    def wait_subscribed(self, barrier) -> None:
        deadline = time.monotonic() + SETUP_TIMEOUT
        while not self.subscribed.wait(0.1):
            if barrier.broken or time.monotonic() > deadline:  # the consumer failed or hangs
                raise RuntimeError("the paired consumer did not subscribe")

    def report_sent(self, count: int) -> None:
        self.sent.value = count

    def done(self, received: int) -> bool:
        return 0 <= self.sent.value <= received


@dataclass
class Job:
    """What one worker process does. `role` is produce, consume, latency or receive (the
    consumer of an e2e-latency pair, whose producer is a latency worker with the same link)."""

    peer: str  # module name under bench/peers
    role: str
    address: str
    stream: str  # topic / stream / subject this worker's pair uses
    batched: bool
    duration: float
    rate: float = 0.0  # latency role: msgs/s this worker offers
    size: int = 100  # bytes per message
    topics: int = 1  # latency roles: topics (streams, subjects) the pair spreads its messages over
    link: Link | None = None  # e2e-latency pairs only


@dataclass
class WorkerResult:
    count: int  # messages acknowledged (producers) or received (consumers)
    elapsed: float  # seconds from the barrier to the last acknowledgement or receipt
    cpu: float  # CPU seconds this worker process used in that time (all its threads)
    latencies: list[float] = field(default_factory=list)  # seconds, latency and receive roles


class Receipts:
    """The tally of an e2e-latency consumer, whichever way its client delivers: the warm-up
    first, received before the barrier so that none of it is still in flight when the clock
    starts, then each message's receive time minus the send time stamped in its payload, until
    it has everything its producer sent or DRAIN seconds after the cell's end."""

    def __init__(self, job: Job, barrier) -> None:
        assert job.link is not None, "a receive worker needs its producer's link"
        self.link, self.barrier, self.duration = job.link, barrier, job.duration
        self.warmup_left = window(WARMUP_MESSAGES, job.size)  # what the producer sends before the barrier
        self.latencies: list[float] = []
        self.t0 = self.c0 = self.last = 0.0
        self.setup_deadline = time.monotonic() + SETUP_TIMEOUT

    def ready(self) -> None:
        """Subscribed: the producer may send its warm-up."""
        self.link.subscribed.set()

    def add(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        now = time.monotonic_ns()
        if self.warmup_left > 0:  # nothing measured is sent before the warm-up has all arrived
            self.warmup_left -= len(payloads)
            return
        self.latencies += [(now - sent_ns(p)) / 1e9 for p in payloads]
        self.last = time.perf_counter()

    def warming(self) -> bool:
        """Whether warm-up messages are still due; raises if the cell failed or setup ran out."""
        if self.warmup_left <= 0:
            return False
        if self.barrier.broken or time.monotonic() > self.setup_deadline:
            raise RuntimeError(f"{self.warmup_left} warm-up messages did not arrive")
        return True

    def start(self) -> None:
        self.barrier.wait()
        self.t0 = self.last = time.perf_counter()
        self.c0 = time.process_time()

    def receiving(self) -> bool:
        if self.link.done(len(self.latencies)):
            return False
        return time.perf_counter() < self.t0 + self.duration + DRAIN

    def result(self) -> WorkerResult:
        return WorkerResult(
            len(self.latencies), self.last - self.t0, time.process_time() - self.c0, self.latencies
        )


def receive_timed(job: Job, barrier, poll: Callable[[], Sequence[bytes]]) -> WorkerResult:
    """An e2e-latency consumer for a client that is polled: `poll` acknowledges what it returned
    before, then returns the payloads that arrived, waiting at most POLL seconds for the first."""
    tally = Receipts(job, barrier)
    tally.ready()
    while tally.warming():
        tally.add(poll())
    tally.start()
    while tally.receiving():
        tally.add(poll())
    return tally.result()


@dataclass
class CellResult:
    peer: str
    workload: str  # produce, e2e or latency
    batched: bool
    procs: int  # producer processes (e2e: each paired with one consumer process)
    rate: float  # msgs/s: acknowledged for produce and latency, received for e2e and e2e-latency
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    p999_ms: float = float("nan")  # p99.9
    max_ms: float = float("nan")
    server_cpu: float = 0.0  # % of one core
    client_cpu: float = 0.0  # % of one core, all worker processes
    other_cpu: float = 0.0  # % of one core used by anything else on the machine meanwhile
    size: int = 100  # bytes per message
    topics: int = 0  # topics (streams) in all; 0 in runs saved before it was recorded
    lost: int = 0  # e2e-latency: sent after the barrier but not received by the consumers' deadline


def worker_main(job: Job, barrier, results) -> None:
    """Entry point of a worker process: the peer module does setup, waits at the barrier, runs."""
    try:
        module = importlib.import_module(f"peers.{job.peer}")
        results.put((job.role, module.run(job, barrier)))
    except BaseException as exc:  # reported to the parent, which fails the cell loudly
        barrier.abort()
        results.put(("error", f"{job.peer} {job.role}: {exc!r}"))


def run_jobs(
    jobs: list[Job],
    server: Server,
    tick: Callable[[float], None] | None = None,
    on_start: Callable[[], None] | None = None,
) -> tuple[dict[str, list[WorkerResult]], tuple[float, float, float]]:
    """Start one process per job, release them together at a barrier; return the results by
    role and (wall s, server CPU s, machine busy CPU s) over the run. `on_start` runs as the
    measured window opens (after the workers' set-up and warm-up)."""
    ctx = mp.get_context("spawn")  # the Pulsar client's C++ threads do not survive fork
    barrier = ctx.Barrier(len(jobs) + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(job, barrier, queue), daemon=True) for job in jobs]
    for p in procs:
        p.start()
    sampler = CpuSampler(server.pid)
    try:
        barrier.wait(timeout=SETUP_TIMEOUT)
    except Exception:
        pass  # a worker failed during setup: its error is in the queue
    sampler.start()
    if on_start is not None:
        on_start()
    start = time.perf_counter()
    duration = max(job.duration for job in jobs)
    while tick and time.perf_counter() - start < duration and not barrier.broken:
        time.sleep(0.2)
        tick(min(1.0, (time.perf_counter() - start) / duration))
    outcomes = [queue.get(timeout=duration + DRAIN + 120) for _ in jobs]
    usage = sampler.stop()
    for p in procs:
        p.join(timeout=30)
    errors = [detail for role, detail in outcomes if role == "error"]
    if errors:
        raise RuntimeError("; ".join(errors))
    by_role: dict[str, list[WorkerResult]] = {}
    for role, result in outcomes:
        by_role.setdefault(role, []).append(result)
    return by_role, usage


def summarize(
    peer: str,
    workload: str,
    batched: bool,
    procs: int,
    by_role: dict[str, list[WorkerResult]],
    usage,
    size: int = 100,
    topics: int = 0,
) -> CellResult:
    """Fold worker results and CPU usage into one table row: rate and latency come from the
    consumers for e2e and e2e-latency, from the producers otherwise."""
    counted = by_role.get(COUNTED[workload], [])
    all_results = [r for results in by_role.values() for r in results]
    wall, server_cpu, busy = usage
    elapsed = max((r.elapsed for r in counted), default=wall) or wall
    rate = sum(r.count for r in counted) / elapsed
    client = sum(r.cpu for r in all_results)
    cell = CellResult(peer, workload, batched, procs, rate, size=size, topics=topics)
    if workload == "e2e-latency":
        cell.lost = sum(r.count for r in by_role["latency"]) - sum(r.count for r in counted)
    cell.server_cpu = 100 * server_cpu / wall
    cell.client_cpu = 100 * client / wall
    cell.other_cpu = max(0.0, 100 * (busy - server_cpu - client) / wall)
    latencies = [x for r in counted for x in r.latencies]
    cell.p50_ms, cell.p99_ms, cell.p999_ms, cell.max_ms = latency_ms(latencies)
    return cell


def best(results: list[CellResult], peer: str, workload: str, batched: bool) -> CellResult | None:
    """The cell with the highest rate among the process counts tried (latency: the only one)."""
    cells = [c for c in results if c.peer == peer and c.workload == workload and c.batched == batched]
    return max(cells, key=lambda c: c.rate, default=None)
