"""Messaging benchmark: Taureau standalone against Apache Pulsar, Redis Streams and NATS JetStream.

Run: python bench/messaging.py [--duration 5] [--only taureau,pulsar,redis,nats]
     [--quick] [--procs 1,2] [--no-fsync] [--profile] [--plot] [--json out.json]

For each system, with 100-byte messages and the client's batching on and off, it measures
produce throughput (acknowledged msgs/s), end-to-end throughput (msgs/s received by consumers
while producers run) and publish latency p50/p99 at an offered 10k msgs/s, prints them with
each server's CPU% and Taureau's ratio to each peer. Redis and NATS come from Debian's packages
(redis-server, nats-server); this script installs nothing. Apache Pulsar standalone is built from
Maven Central jars on first use (bench/peers/pulsar_server.py, needs java and mvn) and is driven
by the same official Python client as Taureau. Not a test: pytest never collects it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `peers` for this process and workers

from peers import nats_jetstream, pulsar, redis_streams, taureau  # noqa: E402
from peers.base import LARGE, LATENCY_RATE  # noqa: E402
from peers.profile import Profiler  # noqa: E402
from peers.runner import CellResult, Job, best, run_jobs, summarize  # noqa: E402

PEERS = {"taureau": taureau, "pulsar": pulsar, "redis": redis_streams, "nats": nats_jetstream}
WORKLOADS = ("produce", "e2e", "latency")
LATENCY_PROCS = 2  # the offered rate is split over this many producer processes
console = Console()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per cell (default 5)")
    ap.add_argument("--only", help=f"comma-separated systems to run, of {','.join(PEERS)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="2 s cells, one process count")
    ap.add_argument("--latency-only", action="store_true", help="only the latency cells (batched and unbatched)")
    ap.add_argument("--procs", default="1,2,4", help="producer processes to try per throughput cell")
    ap.add_argument(
        "--size",
        type=int,
        default=100,
        help="bytes per message (default 100); from 64 KiB on, no latency cells (10k msgs/s "
        "would be gigabytes a second) and the table shows MB/s",
    )
    ap.add_argument("--no-fsync", action="store_true", help="also run Taureau with --no-journal-fsync")
    ap.add_argument("--profile", action="store_true", help="py-spy the broker during the e2e cells")
    ap.add_argument("--plot", action="store_true", help="write docs/messaging-benchmark.png")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--from-json", type=Path, help="print the table (and --plot) of a saved run; run nothing")
    args = ap.parse_args(argv)
    args.procs = [int(p) for p in args.procs.split(",")]
    args.only = args.only.split(",") if args.only else list(PEERS)
    unknown = set(args.only) - set(PEERS)
    if unknown:
        ap.error(f"--only: unknown system(s) {', '.join(sorted(unknown))}")
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
    cells = []
    for batched in (True, False):
        if not args.latency_only:
            cells += [("produce", batched, n) for n in args.procs]
            cells += [("e2e", batched, n) for n in args.procs]
        if args.size < LARGE:
            cells.append(("latency", batched, LATENCY_PROCS))
    return cells


def jobs_for(
    peer: str, address: str, cell: tuple[str, bool, int], duration: float, tag: str, size: int
) -> list[Job]:
    """Worker jobs of one cell: each producer on its own stream; e2e pairs it with a consumer."""
    workload, batched, procs = cell
    jobs = []
    for i in range(procs):
        stream = f"bench-{tag}-{i}"
        role = "latency" if workload == "latency" else "produce"
        rate = LATENCY_RATE / procs if workload == "latency" else 0.0
        jobs.append(Job(peer, role, address, stream, batched, duration, rate, size))
        if workload == "e2e":
            jobs.append(Job(peer, "consume", address, stream, batched, duration, size=size))
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
            if args.profile and module is taureau and fsync and workload == "e2e":
                profiler = Profiler(server.pid, args.duration)
                profiler.start()
            try:
                results.append(run_cell(server, name, (workload, batched, procs), args, f"{n}", progress))
            except RuntimeError as exc:  # one failed cell leaves a gap in the table, not a lost run
                console.print(f"[red]{server.name} {workload} {batched=} x{procs} failed:[/] {exc}")
            if profiler:
                profile = profiler.finish(f"{'batched' if batched else 'unbatched'} e2e x{procs}")
                profiles.append(profile)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def run_cell(
    server, name: str, cell: tuple[str, bool, int], args: argparse.Namespace, tag: str, progress
) -> CellResult:
    """Run one (workload, batched, processes) cell against a running server, with a progress bar."""
    workload, batched, procs = cell
    mode = "batched" if batched else "unbatched"
    label = f"{server.name:<18} {workload:<8} {mode:<9} x{procs}"
    task = progress.add_task(label, total=1.0)
    module = PEERS[name].__name__.rsplit(".", 1)[1]
    jobs = jobs_for(module, server.address, cell, args.duration, tag, args.size)
    by_role, usage = run_jobs(jobs, server, lambda f: progress.update(task, completed=f))
    result = summarize(server.name, workload, batched, procs, by_role, usage, args.size)
    shown = f"p99 {result.p99_ms:.2f} ms" if workload == "latency" else _rate(result)
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
    if workload != "latency":
        return f"{_rate(cell)} x{cell.procs}\n[dim]{cpu}[/]"
    short = "" if cell.rate >= 0.95 * LATENCY_RATE else f"\n[red]only {cell.rate:,.0f}/s sustained[/]"
    return f"{cell.p50_ms:.2f} / {cell.p99_ms:.2f} ms{short}\n[dim]{cpu}[/]"


def ratio(mine: CellResult | None, theirs: CellResult | None, workload: str) -> str:
    if mine is None or theirs is None:
        return "-"
    if workload == "latency":  # lower is better: peer p99 / Taureau p99
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
            if workload == "latency":
                label += f"\np50/p99 @ {LATENCY_RATE // 1000}k/s"
            row = [label] + [fmt_cell(best(results, p, workload, batched), workload) for p in peers]
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
