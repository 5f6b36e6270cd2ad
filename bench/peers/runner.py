"""Run one benchmark cell: worker processes behind a barrier, server CPU sampled over the window."""

from __future__ import annotations

import importlib
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .base import CpuSampler, Server, percentile


@dataclass
class Job:
    """What one worker process does. `role` is produce, consume or latency."""

    peer: str  # module name under bench/peers
    role: str
    address: str
    stream: str  # topic / stream / subject this worker's pair uses
    batched: bool
    duration: float
    rate: float = 0.0  # latency role: msgs/s this worker offers
    size: int = 100  # bytes per message


@dataclass
class WorkerResult:
    count: int  # messages acknowledged (producers) or received (consumers)
    elapsed: float  # seconds from the barrier to the last acknowledgement or receipt
    cpu: float  # CPU seconds this worker process used in that time (all its threads)
    latencies: list[float] = field(default_factory=list)  # seconds, latency role only


@dataclass
class CellResult:
    peer: str
    workload: str  # produce, e2e or latency
    batched: bool
    procs: int  # producer processes (e2e: each paired with one consumer process)
    rate: float  # msgs/s: acknowledged for produce, received for e2e, offered for latency
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    server_cpu: float = 0.0  # % of one core
    client_cpu: float = 0.0  # % of one core, all worker processes
    other_cpu: float = 0.0  # % of one core used by anything else on the machine meanwhile
    size: int = 100  # bytes per message


def worker_main(job: Job, barrier, results) -> None:
    """Entry point of a worker process: the peer module does setup, waits at the barrier, runs."""
    try:
        module = importlib.import_module(f"peers.{job.peer}")
        results.put((job.role, module.run(job, barrier)))
    except BaseException as exc:  # reported to the parent, which fails the cell loudly
        barrier.abort()
        results.put(("error", f"{job.peer} {job.role}: {exc!r}"))


def run_jobs(
    jobs: list[Job], server: Server, tick: Callable[[float], None] | None = None
) -> tuple[dict[str, list[WorkerResult]], tuple[float, float, float]]:
    """Start one process per job, release them together at a barrier; return the results by
    role and (wall s, server CPU s, machine busy CPU s) over the run."""
    ctx = mp.get_context("spawn")  # the Pulsar client's C++ threads do not survive fork
    barrier = ctx.Barrier(len(jobs) + 1)
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker_main, args=(job, barrier, queue), daemon=True) for job in jobs]
    for p in procs:
        p.start()
    sampler = CpuSampler(server.pid)
    try:
        barrier.wait(timeout=120)
    except Exception:
        pass  # a worker failed during setup: its error is in the queue
    sampler.start()
    start = time.perf_counter()
    duration = max(job.duration for job in jobs)
    while tick and time.perf_counter() - start < duration and not barrier.broken:
        time.sleep(0.2)
        tick(min(1.0, (time.perf_counter() - start) / duration))
    outcomes = [queue.get(timeout=duration + 120) for _ in jobs]
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
) -> CellResult:
    """Fold worker results and CPU usage into one table row: rate and latency come from the
    consumers for e2e, from the producers otherwise."""
    counted = by_role.get("consume") or by_role.get("produce") or by_role.get("latency", [])
    all_results = [r for results in by_role.values() for r in results]
    wall, server_cpu, busy = usage
    elapsed = max((r.elapsed for r in counted), default=wall) or wall
    rate = sum(r.count for r in counted) / elapsed
    client = sum(r.cpu for r in all_results)
    cell = CellResult(peer, workload, batched, procs, rate, size=size)
    cell.server_cpu = 100 * server_cpu / wall
    cell.client_cpu = 100 * client / wall
    cell.other_cpu = max(0.0, 100 * (busy - server_cpu - client) / wall)
    latencies = sorted(x for r in counted for x in r.latencies)
    if latencies:
        cell.p50_ms = 1000 * percentile(latencies, 50)
        cell.p99_ms = 1000 * percentile(latencies, 99)
    return cell


def best(results: list[CellResult], peer: str, workload: str, batched: bool) -> CellResult | None:
    """The cell with the highest rate among the process counts tried (latency: the only one)."""
    cells = [c for c in results if c.peer == peer and c.workload == workload and c.batched == batched]
    return max(cells, key=lambda c: c.rate, default=None)
