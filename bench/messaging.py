"""Messaging benchmark: Taureau standalone against Apache Pulsar, Redis Streams and NATS JetStream.

Run: python bench/messaging.py [--duration 5] [--only taureau,pulsar,redis,nats]
     [--quick] [--procs 1,2] [--no-fsync] [--profile] [--plot] [--json out.json]
     python bench/messaging.py --latency-only|--e2e-latency-only [--topics 1000] [--duration 3]

For each system, with 100-byte messages and the client's batching on and off, it measures
produce throughput (acknowledged msgs/s), end-to-end throughput (msgs/s received by consumers
while producers run), publish latency (send call to acknowledgement) and end-to-end latency
(send call to receipt by a consumer in another process) p50/p99/p99.9/max at an offered
10k msgs/s, optionally spread over --topics topics, prints them with each server's CPU% and
Taureau's ratio to each peer. Redis and NATS come from Debian's packages
(redis-server, nats-server); this script installs nothing. Apache Pulsar standalone is built from
Maven Central jars on first use (bench/peers/pulsar_server.py, needs java and mvn) and is driven
by the same official Python client as Taureau. Not a test: pytest never collects it.

End-to-end latency pairs each paced producer process with a consumer process on the same topics.
Every payload carries time.monotonic_ns() of its send call in its first 8 bytes; the consumer
subtracts it from its own reading at receipt. It receives as a latency-minded application would:
Pulsar and Taureau receive() one message at a time (the client's default receiver queue, 1,000
per topic and 50,000 across a multi-topic consumer; individual acknowledgements, which the client
groups), Redis XREADGROUP COUNT 1000 BLOCK over all its streams
(the XACKs ride with the next read), NATS a push consumer (one AckPolicy.ALL ack per 100). The
warm-up is received before the clock starts; a consumer stops when it has every message its
producer reports sent after that, or 10 s after the cell's end (the rest is reported as lost).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `peers` for this process and workers

from peers import nats_jetstream, pulsar, redis_streams, taureau  # noqa: E402
from peers.base import LARGE, LATENCY_RATE, STAMP_BYTES  # noqa: E402
from peers.loop_report import loop_report  # noqa: E402
from peers.profile import Profiler  # noqa: E402
from peers.runner import CellResult, Job, Link, best, run_jobs, summarize  # noqa: E402

PEERS = {"taureau": taureau, "pulsar": pulsar, "redis": redis_streams, "nats": nats_jetstream}
WORKLOADS = ("produce", "e2e", "latency", "e2e-latency")
LATENCY_WORKLOADS = ("latency", "e2e-latency")  # paced at LATENCY_RATE; lower is better
LATENCY_PROCS = 2  # the offered rate is split over this many producer processes
console = Console()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    ap.add_argument("--only", help=f"comma-separated systems to run, of {','.join(PEERS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="2 s cells, one process count")
    only = ap.add_mutually_exclusive_group()
    only.add_argument(
        "--latency-only",
        action="store_true",
        help="only the publish and end-to-end latency cells (batched and unbatched)",
    )
    only.add_argument("--e2e-latency-only", action="store_true", help="only the end-to-end latency cells")
    ap.add_argument(
        "--topics",
        type=int,
        default=1,
        metavar="N",
        help=f"topics (streams, subjects) the latency cells spread their {LATENCY_RATE:,} msgs/s "
        f"over, N/{LATENCY_PROCS} per producer process and its consumer; default 1: each "
        f"process its own, {LATENCY_PROCS} in all",
    )
    ap.add_argument("--procs", default="1,2,4", help="producer processes to try per throughput cell")
    ap.add_argument(
        "--size",
        type=int,
        default=100,
        help="bytes per message (default 100); from 64 KiB on, no latency cells (10k msgs/s "
        "would be gigabytes a second) and the table shows MB/s",
    )
    ap.add_argument("--no-fsync", action="store_true", help="also run Taureau with --no-journal-fsync")
    ap.add_argument("--profile", action="store_true", help="py-spy the broker during the e2e and e2e-latency cells")
    ap.add_argument("--plot", action="store_true", help="write docs/messaging-benchmark.png")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--from-json", type=Path, help="print the table (and --plot) of a saved run; run nothing")
    args = ap.parse_args(argv)
    args.procs = [int(p) for p in args.procs.split(",")]
    args.only = args.only.split(",") if args.only else list(PEERS)
    unknown = set(args.only) - set(PEERS)
    if unknown:
        ap.error(f"--only: unknown system(s) {', '.join(sorted(unknown))}")
    if args.topics < 1 or (args.topics > LATENCY_PROCS and args.topics % LATENCY_PROCS):
        ap.error(f"--topics: a positive multiple of {LATENCY_PROCS} (the producer processes), or 1")
    if args.size < STAMP_BYTES:
        ap.error(f"--size: at least {STAMP_BYTES} bytes (the send time end-to-end latency carries)")
    if args.quick:
        args.duration, args.procs = min(args.duration, 2.0), args.procs[-1:]
    return args


def check_binaries(names: list[str]) -> list[str]:
    """Drop peers whose server binary is missing, saying how to install it."""
    kept = []
    for name in names:
        hint = PEERS[name].missing()
        if hint:
            console.print(f"[yellow]skipping {name}:[/] {hint}")
        else:
            kept.append(name)
    return kept


def plan(args: argparse.Namespace) -> list[tuple[str, bool, int]]:
    """The cells run against each server: (workload, batched, producer processes)."""
    throughput = not (args.latency_only or args.e2e_latency_only)
    latency = ["e2e-latency"] if args.e2e_latency_only else list(LATENCY_WORKLOADS)
    cells = []
    for batched in (True, False):
        if throughput:
            cells += [("produce", batched, n) for n in args.procs]
            cells += [("e2e", batched, n) for n in args.procs]
        if args.size < LARGE:  # 10k msgs/s of large messages would be gigabytes a second
            cells += [(workload, batched, LATENCY_PROCS) for workload in latency]
    return cells


def topics_per_proc(topics: int) -> int:
    """--topics over the latency cells' producer processes; fewer than one each is one each."""
    return max(1, topics // LATENCY_PROCS)


def jobs_for(
    peer: str, address: str, cell: tuple[str, bool, int], args: argparse.Namespace, tag: str
) -> list[Job]:
    """Worker jobs of one cell: each producer on its own streams; e2e pairs it with a consumer,
    e2e-latency with a consumer that it tells how many it sent."""
    workload, batched, procs = cell
    paced = workload in LATENCY_WORKLOADS
    role = "latency" if paced else "produce"
    rate = LATENCY_RATE / procs if paced else 0.0
    topics = topics_per_proc(args.topics) if paced else 1
    consumer = {"e2e": "consume", "e2e-latency": "receive"}.get(workload)
    jobs = []
    for i in range(procs):
        stream = f"bench-{tag}-{i}"
        link = Link() if workload == "e2e-latency" else None
        pair = {"address": address, "stream": stream, "batched": batched, "duration": args.duration}
        pair |= {"size": args.size, "topics": topics, "link": link}
        jobs.append(Job(peer, role, rate=rate, **pair))
        if consumer:
            jobs.append(Job(peer, consumer, **pair))
    return jobs


def run_peer(name: str, args, progress: Progress, profiles: list, fsync: bool = True) -> list[CellResult]:
    """Start one server, run every cell of the plan against it, stop it."""
    module = PEERS[name]
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    server = module.start(workdir, fsync=fsync) if module is taureau else module.start(workdir)
    results = []
    try:
        console.print(f"[bold]{server.name}[/] " + ", ".join(f"{k}: {v}" for k, v in server.settings.items()))
        for n, (workload, batched, procs) in enumerate(plan(args)):
            profiler = None
            if args.profile and module is taureau and fsync and workload in ("e2e", "e2e-latency"):
                # Started with the measured window: with 1,000 topics the clients' set-up
                # (lookups, producers, subscriptions) took most of a recording started before it.
                profiler = Profiler(server.pid, args.duration)
            try:
                cell = (workload, batched, procs)
                on_start = profiler.start if profiler else None
                results.append(run_cell(server, name, cell, args, f"{n}", progress, on_start))
            except RuntimeError as exc:  # one failed cell leaves a gap in the table, not a lost run
                console.print(f"[red]{server.name} {workload} {batched=} x{procs} failed:[/] {exc}")
            if profiler and profiler.started:  # not when the cell failed in its set-up
                profile = profiler.finish(f"{'batched' if batched else 'unbatched'} {workload} x{procs}")
                profiles.append(profile)
        if server.admin_url is not None:
            # The broker's histograms cover its whole life: every cell of this run against it.
            console.print(f"[bold]{server.name}[/] over this run: " + loop_report(server.admin_url))
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def run_cell(
    server,
    name: str,
    cell: tuple[str, bool, int],
    args: argparse.Namespace,
    tag: str,
    progress,
    on_start: Callable[[], None] | None = None,
) -> CellResult:
    """Run one (workload, batched, processes) cell against a running server, with a progress bar."""
    workload, batched, procs = cell
    mode = "batched" if batched else "unbatched"
    label = f"{server.name:<18} {workload:<11} {mode:<9} x{procs}"
    task = progress.add_task(label, total=1.0)
    module = PEERS[name].__name__.rsplit(".", 1)[1]
    jobs = jobs_for(module, server.address, cell, args, tag)
    by_role, usage = run_jobs(jobs, server, lambda f: progress.update(task, completed=f), on_start)
    topics = procs * jobs[0].topics
    result = summarize(server.name, workload, batched, procs, by_role, usage, args.size, topics)
    shown = f"p99 {result.p99_ms:.2f} ms" if workload in LATENCY_WORKLOADS else _rate(result)
    progress.update(task, completed=1.0, description=f"{label}  {shown}  srv {result.server_cpu:.0f}%")
    return result


def _rate(cell: CellResult) -> str:
    if cell.size == 100:
        return f"{cell.rate:,.0f}/s"
    return f"{cell.rate * cell.size / 1e6:,.1f} MB/s ({cell.rate:,.0f}/s)"


def fmt_cell(cell: CellResult | None, workload: str) -> str:
    if cell is None:
        return "-"
    cpu = f"srv {cell.server_cpu:.0f}% cli {cell.client_cpu:.0f}% oth {cell.other_cpu:.0f}%"
    if workload not in LATENCY_WORKLOADS:
        return f"{_rate(cell)} x{cell.procs}\n[dim]{cpu}[/]"
    times = " / ".join(f"{ms:.2f}" for ms in (cell.p50_ms, cell.p99_ms, cell.p999_ms, cell.max_ms))
    short = "" if cell.rate >= 0.95 * LATENCY_RATE else f"\n[red]only {cell.rate:,.0f}/s sustained[/]"
    lost = f"\n[red]{cell.lost:,} sent, not received[/]" if cell.lost else ""
    return f"{times} ms{short}{lost}\n[dim]{cpu}[/]"


def latency_label(workload: str, cells: list[CellResult]) -> str:
    """The second line of a latency row's label: what is timed, at what rate, over how many topics."""
    timed = "publish" if workload == "latency" else "send→receive"
    topics = max((c.topics for c in cells), default=0) or LATENCY_PROCS  # 0: saved before --topics
    return f"\n{timed}\np50 / p99 / p99.9 / max\n@ {LATENCY_RATE // 1000}k/s, {topics:,} topics"


def ratio(mine: CellResult | None, theirs: CellResult | None, workload: str) -> str:
    if mine is None or theirs is None:
        return "-"
    if workload in LATENCY_WORKLOADS:  # lower is better: peer p99 / Taureau p99
        return f"{theirs.p99_ms / mine.p99_ms:.2f}x"
    return f"{mine.rate / theirs.rate:.2f}x"


def table(results: list[CellResult]) -> Table:
    peers = list(dict.fromkeys(c.peer for c in results))
    size = results[0].size if results else 100
    t = Table(
        title=f"{size:,}-byte messages, loopback, 2 cores "
        "(srv/cli/oth = server/clients/other CPU, % of one core)"
    )
    t.add_column("workload")
    for p in peers:
        t.add_column(p, justify="right")
    others = [p for p in peers if p != "taureau"]
    for p in others:
        t.add_column(f"taureau / {p}", justify="right")
    for workload in WORKLOADS:
        for batched in (True, False):
            label = f"{workload} {'batched' if batched else 'unbatched'}"
            cells = [best(results, p, workload, batched) for p in peers]
            if not any(cells):  # e.g. the throughput rows of a --latency-only run
                continue
            if workload in LATENCY_WORKLOADS:
                label += latency_label(workload, [c for c in cells if c])
            row = [label] + [fmt_cell(c, workload) for c in cells]
            mine = best(results, "taureau", workload, batched)
            row += [ratio(mine, best(results, p, workload, batched), workload) for p in others]
            t.add_row(*row, end_section=True)
    return t


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        results = [CellResult(**d) for d in json.loads(args.from_json.read_text())]
        return report(results, [], args)
    names = check_binaries(args.only)
    console.print(f"{os.cpu_count()} cores, {args.duration:g} s per cell, producer processes {args.procs}")
    results: list[CellResult] = []
    profiles: list = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
    ) as prog:
        for name in names:
            results += run_peer(name, args, prog, profiles)
            if name == "taureau" and args.no_fsync:
                results += run_peer(name, args, prog, profiles, fsync=False)
    return report(results, profiles, args)


def report(results: list[CellResult], profiles: list, args: argparse.Namespace) -> int:
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 150  # piped or redirected, rich would squeeze the table into 80 columns
    console.print(table(results))
    for profile in profiles:
        console.print(profile.render(), highlight=False)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in results], indent=1))
    if args.plot:
        from peers.plot import plot

        out = Path(__file__).resolve().parent.parent / "docs" / "messaging-benchmark.png"
        plot(results, out)
        console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
