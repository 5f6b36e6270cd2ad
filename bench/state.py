"""Benchmark taureau.state against Redis (Debian's redis-server, redis-py) on loopback.

Run: python bench/state.py [--seconds 1.5] [--no-redis] [--only throughput,split,multiplexing,
     transports,replication,restart,jobmix] [--plot docs/state-multiplexing.png]
Prints ops/s for get/put of 64 B and 4 KiB values, single and batched (100 per request,
redis-py pipelines and MGET/MSET for Redis), 1 and 8 client threads, with the ratio to
Redis; then the time to split a full 32 MiB block, memory multiplexing across two jobs,
the two client transports (plain sockets vs an event-loop thread); a controller restart
(kill -9) to its first served requests against a cold start of the same deployment; and a
job-mix simulation (many short jobs with overlapping lifetimes) reporting the pool's peak
blocks against the sum of the jobs' peaks, with a plot; throughput with chains of 2
replicas against unreplicated tables, and the time to mend the chains of a killed memory
server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from taureau.state import StateClient
from taureau.state.service import start_state_services
from taureau.testing.ports import free_port

BATCH = 100
KEYS = 2000  # keys per thread: the working set each thread cycles over


def start_redis():
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    r = redis.Redis(port=port)
    for _ in range(100):
        try:
            r.ping()
            return proc, port
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


class Services:
    """Controller on a loop thread in this process, memory server in a child process."""

    def __init__(self, block_size: int, num_blocks: int, lease_ms: int) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.dir = tempfile.mkdtemp(prefix="taureau-bench-")
        self.svc = self.run(
            start_state_services(
                controller_port=0,
                block_size=block_size,
                num_blocks=num_blocks,
                lease_ms=lease_ms,
                data_dir=self.dir,
            )
        )
        self.address = self.svc.controller_address

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def close(self) -> None:
        self.run(self.svc.close())
        shutil.rmtree(self.dir, ignore_errors=True)


def timed(threads: int, seconds: float, make_worker) -> float:
    """Run `threads` workers for about `seconds`; return total ops/s. A worker is
    make_worker(tid) -> callable(deadline) -> ops done."""
    workers = [make_worker(t) for t in range(threads)]
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def body(i: int) -> None:
        start.wait()
        counts[i] = workers[i](time.perf_counter() + seconds)

    ts = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def loop_ops(fn_for_index, per_call: int):
    def run(deadline: float) -> int:
        n = i = 0
        while time.perf_counter() < deadline:
            for _ in range(50):
                fn_for_index(i)
                i += 1
            n += 50 * per_call
        return n

    return run


def kv_worker(get, put, mget, mput, op: str, size: int, batched: bool):
    """Workers for a key-value API: single get/put, or batch get/put of BATCH keys."""

    def make(tid: int):
        keys = [b"t%d-key%06d" % (tid, i) for i in range(KEYS)]
        val = b"v" * size
        mput({k: val for k in keys})
        groups = [keys[i : i + BATCH] for i in range(0, KEYS, BATCH)]
        if not batched:
            f = get if op == "get" else (lambda k: put(k, val))
            return loop_ops(lambda i: f(keys[i % KEYS]), 1)
        if op == "get":
            return loop_ops(lambda i: mget(groups[i % len(groups)]), BATCH)
        return loop_ops(lambda i: mput({k: val for k in groups[i % len(groups)]}), BATCH)

    return make


def redis_pipeline_worker(r, op: str, size: int):
    def make(tid: int):
        keys = [b"t%d-key%06d" % (tid, i) for i in range(KEYS)]
        val = b"v" * size
        r.mset({k: val for k in keys})
        groups = [keys[i : i + BATCH] for i in range(0, KEYS, BATCH)]

        def pipe(i: int) -> None:
            p = r.pipeline(transaction=False)
            for k in groups[i % len(groups)]:
                p.get(k) if op == "get" else p.set(k, val)
            p.execute()

        return loop_ops(pipe, BATCH)

    return make


def throughput(args, svc: Services, redis_port: int | None) -> None:
    print(f"\n== throughput ({args.seconds}s per cell; batch = {BATCH} keys) ==")
    print(f"{'workload':<28}{'taureau':>12}{'redis':>12}{'ratio':>8}{'redis m*':>12}{'ratio':>8}")
    client = StateClient(svc.address)
    r = None
    if redis_port:
        import redis

        r = redis.Redis(port=redis_port, max_connections=64)
    for threads in (1, 8):
        for size in (64, 4096):
            for batched in (False, True):
                for op in ("get", "put"):
                    path = f"/bench/t{threads}-s{size}-{op}-{int(batched)}"
                    ht = client.open_or_create_hash_table(path)
                    work = kv_worker(ht.get, ht.upsert, ht.multi_get, ht.multi_put, op, size, batched)
                    ours = timed(threads, args.seconds, work)
                    client.remove(path)
                    name = f"{op} {size}B {'batch' if batched else 'single'} x{threads}t"
                    line = f"{name:<28}{ours:>12,.0f}"
                    if r is not None:
                        r.flushall()
                        if batched:
                            work = redis_pipeline_worker(r, op, size)
                        else:
                            work = kv_worker(r.get, r.set, r.mget, r.mset, op, size, False)
                        theirs = timed(threads, args.seconds, work)
                        line += f"{theirs:>12,.0f}{ours / theirs:>7.2f}x"
                        if batched:
                            mc = timed(
                                threads, args.seconds, kv_worker(r.get, r.set, r.mget, r.mset, op, size, True)
                            )
                            line += f"{mc:>12,.0f}{ours / mc:>7.2f}x"
                    print(line, flush=True)
    client.disconnect()
    print("(redis = GET/SET, or pipelines of them when batched; redis m* = MGET/MSET of the batch)")


def split_time(svc: Services) -> None:
    print("\n== split of a full 32 MiB block (64 B values) ==")
    blocks = svc.svc.controller.blocks
    durations: list[float] = []
    orig = blocks.split

    async def timed_split(alloc: int, at: int) -> None:
        t0 = time.perf_counter()
        await orig(alloc, at)
        durations.append(time.perf_counter() - t0)

    blocks.split = timed_split
    c = StateClient(svc.address)
    ht = c.open_or_create_hash_table("/bench/split")
    val = b"v" * 64
    i = 0
    t0 = time.perf_counter()
    while not durations:
        ht.multi_put({b"key%09d" % j: val for j in range(i, i + 1000)})
        i += 1000
    fill = time.perf_counter() - t0
    blocks.split = orig
    print(f"block filled to the high watermark with {i:,} keys in {fill:.2f}s ({i / fill:,.0f} keys/s)")
    print(f"split (allocate + move half the keys + publish map): {durations[0] * 1000:.0f} ms")
    assert len(ht.multi_get([b"key%09d" % j for j in range(0, i, 997)])) > 0
    c.remove("/bench/split")
    c.disconnect()


def multiplexing(svc: Services, lease_ms: int) -> None:
    print("\n== memory multiplexing: two jobs whose lifetimes do not overlap ==")
    c = StateClient(svc.address)
    total = c.stats()["blocks_total"]
    val = b"v" * 4096

    def job(name: str, cleanup: bool) -> int:
        jc = StateClient(svc.address)
        ht = jc.open_or_create_hash_table(f"/jobs/{name}/shuffle")
        ht.multi_put({b"k%06d" % i: val for i in range(20000)})  # ~80 MB: several blocks
        used = jc.status(f"/jobs/{name}/shuffle")["blocks"]
        if cleanup:
            jc.remove(f"/jobs/{name}")
        jc.disconnect()  # without cleanup: the job just stops renewing (as if it died)
        return used

    a = job("A", cleanup=False)
    t0 = time.perf_counter()
    while c.exists("/jobs/A"):
        time.sleep(0.05)
    reclaim = time.perf_counter() - t0
    free_after_a = c.stats()["blocks_free"]
    b = job("B", cleanup=True)
    print(f"pool: {total} blocks; job A used {a}, reclaimed {reclaim:.2f}s after it stopped renewing")
    print(
        f"(lease {lease_ms} ms + grace {lease_ms} ms); free after A: {free_after_a}/{total}; job B used {b}"
    )
    print(f"peak blocks for A then B: {max(a, b)} (job-level provisioning would hold {a + b})")
    c.disconnect()


def transports(svc: Services) -> None:
    print("\n== client transport: plain socket per thread vs a background event-loop thread ==")
    from taureau.state.codec import Op
    from taureau.state.rpc import connect, split_address

    c = StateClient(svc.address)
    ht = c.open_or_create_hash_table("/bench/transport")
    ht.put(b"k", b"v" * 64)
    p = ht._parts[0]
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        ht.get(b"k")
    sock_rate = n / (time.perf_counter() - t0)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    host, port = split_address(p.addr)
    peer = asyncio.run_coroutine_threadsafe(connect(host, port), loop).result()

    async def get() -> list[bytes]:
        return await peer.call(Op.GET, [p.alloc, b"k"])

    t0 = time.perf_counter()
    for _ in range(n):
        asyncio.run_coroutine_threadsafe(get(), loop).result()
    loop_rate = n / (time.perf_counter() - t0)
    print(f"single get 64 B: plain socket {sock_rate:,.0f} ops/s, loop thread {loop_rate:,.0f} ops/s")
    loop.call_soon_threadsafe(peer.close)
    c.remove("/bench/transport")
    c.disconnect()


# -- controller restart ---------------------------------------------------------------------------

STATE_CMD = [sys.executable, "-m", "taureau.cli.state_cmd"]


def _controller(port: int, data_dir: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*STATE_CMD, "state-controller", "--port", str(port), "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().startswith("state controller on")
    return proc


def _memory_server(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *STATE_CMD,
            "memory-server",
            "--controller",
            f"127.0.0.1:{port}",
            "--block-size",
            "1MiB",
            "--blocks",
            "96",
        ]
    )


def _until(pred, timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not pred():
        if time.perf_counter() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.002)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _serving(client: StateClient, n: int) -> bool:
    try:
        return client.stats()["servers"] >= n
    except Exception:  # noqa: BLE001 - not up yet
        return False


def controller_restart(structures: int = 40) -> None:
    print("\n== controller restart (kill -9) to first served request, against a cold start ==")
    work = tempfile.mkdtemp(prefix="taureau-bench-restart-")
    port = free_port()
    procs: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        procs.append(_controller(port, f"{work}/ctl"))
        procs += [_memory_server(port) for _ in range(2)]
        c = StateClient(f"127.0.0.1:{port}")
        _until(lambda: _serving(c, 2))
        c.open_or_create_hash_table("/bench/cold").put(b"k", b"v")
        cold = time.perf_counter() - t0
        for i in range(structures):  # ~2.4 MB each: a few blocks per structure
            ht = c.open_or_create_hash_table(f"/bench/r/ht{i}")
            ht.multi_put({b"k%05d" % j: b"v" * 200 for j in range(8000)})
        blocks = c.stats()["blocks_used"]
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()
        t0 = time.perf_counter()
        procs[0] = _controller(port, f"{work}/ctl")
        t_port = time.perf_counter() - t0
        c.open_or_create_hash_table("/bench/after").put(b"k", b"v")  # a create: needs a server back
        t_create = time.perf_counter() - t0
        assert c.open_hash_table("/bench/r/ht0").get(b"k00000") == b"v" * 200
        t_read = time.perf_counter() - t0
        _until(lambda: c.stats()["unsettled"] == 0)
        t_settled = time.perf_counter() - t0
        print(f"namespace: {structures} structures, {blocks} blocks of 1 MiB on 2 memory servers")
        print(f"cold start (controller + 2 memory servers) to first create served: {cold * 1000:.0f} ms")
        print(
            f"restart to port open {t_port * 1000:.0f} ms, first create {t_create * 1000:.0f} ms "
            f"({t_create / cold:.2f}x the cold start), first read of old data {t_read * 1000:.0f} ms, "
            f"every structure reconciled {t_settled * 1000:.0f} ms"
        )
        c.disconnect()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


# -- replication ----------------------------------------------------------------------------------


def _chains(c: StateClient, path: str) -> list[list[str]]:
    from taureau.state.codec import Op

    return [[b["addr"] for b in p["chain"]] for p in c.control(Op.BLOCK_MAP, {"path": path})["partitions"]]


def replication(seconds: float) -> None:
    """Throughput with chains of 2 against unreplicated tables (same servers, same run), and
    the time to mend every chain of a table after one of its memory servers is killed."""
    print("\n== replication: chains of 2 against 1, and repair after kill -9 of a memory server ==")
    work = tempfile.mkdtemp(prefix="taureau-bench-repl-")
    port = free_port()
    cmd = [*STATE_CMD, "memory-server", "--controller", f"127.0.0.1:{port}", "--block-size", "32MiB"]
    procs = [_controller(port, f"{work}/ctl")]
    by_addr: dict[str, subprocess.Popen] = {}
    for _ in range(3):
        ms_port = free_port()
        by_addr[f"127.0.0.1:{ms_port}"] = subprocess.Popen([*cmd, "--blocks", "24", "--port", str(ms_port)])
    procs += by_addr.values()
    try:
        c = StateClient(f"127.0.0.1:{port}")
        _until(lambda: _serving(c, 3))
        print(f"{'workload':<28}{'replicas=1':>12}{'replicas=2':>12}{'ratio':>8}")
        for op, batched in (("put", False), ("get", False), ("put", True), ("get", True)):
            rates = []
            for r in (1, 2):
                path = f"/bench/repl/{op}{int(batched)}r{r}"
                ht = c.open_or_create_hash_table(path, replicas=r)
                work_ = kv_worker(ht.get, ht.upsert, ht.multi_get, ht.multi_put, op, 64, batched)
                rates.append(timed(1, seconds, work_))
                c.remove(path)
            name = f"{op} 64B {'batch' if batched else 'single'} x1t"
            print(f"{name:<28}{rates[0]:>12,.0f}{rates[1]:>12,.0f}{rates[1] / rates[0]:>7.2f}x")
        ht = c.open_or_create_hash_table("/bench/repl/big", replicas=2)
        for i in range(0, 400_000, 10_000):  # ~120 MB of entries: several 32 MiB blocks per server
            ht.multi_put({b"k%07d" % j: b"v" * 200 for j in range(i, i + 10_000)})
        before = _chains(c, "/bench/repl/big")
        victim_addr = before[0][0]  # the head of the first chain
        hit = sum(victim_addr in ch for ch in before)
        used = {s["address"]: s["used_bytes"] for s in c.stats()["memory_servers"]}
        t0 = time.perf_counter()
        os.kill(by_addr[victim_addr].pid, signal.SIGKILL)
        _until(lambda: all(victim_addr not in ch and len(ch) == 2 for ch in _chains(c, "/bench/repl/big")))
        mend = time.perf_counter() - t0
        assert ht.get(b"k0000000") == b"v" * 200
        print(
            f"repair: {hit} of {len(before)} chains had a block on the killed server "
            f"({used[victim_addr] / (1 << 20):.0f} MiB of its memory); all mended onto the other "
            f"servers in {mend * 1000:.0f} ms ({mend * 1000 / max(hit, 1):.0f} ms a chain)"
        )
        c.disconnect()
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(10)
        shutil.rmtree(work, ignore_errors=True)


# -- job mix: multiplexing the pool ------------------------------------------------------------------


def job_mix(jobs: int, span_s: float, plot: str | None, seed: int = 1) -> None:
    """Many short jobs with overlapping lifetimes on one pool (Jiffy's multiplexing claim):
    each grows a shuffle table to its own peak, holds it, then removes it (a fifth die
    instead and are reclaimed by their lease). Peak pool blocks against the sum of the jobs'
    peaks, which is what provisioning each job for its peak would reserve."""
    print(f"\n== job mix: {jobs} jobs over {span_s:.0f} s sharing one pool ==")
    lease_ms = 500
    svc = Services(block_size=1 << 20, num_blocks=512, lease_ms=lease_ms)
    rnd = random.Random(seed)
    plans = []
    for i in range(jobs):
        start = rnd.uniform(0, span_s * 0.75)
        dur = rnd.uniform(span_s * 0.08, span_s * 0.3)
        mb = min(40.0, rnd.lognormvariate(1.3, 0.8))  # a few MB of shuffle data, some much more
        plans.append((i, start, dur, mb, rnd.random() < 0.2))
    peaks: dict[int, int] = {}
    samples: list[tuple[float, int, int]] = []  # (t, pool blocks used, blocks of live jobs)
    stop = threading.Event()
    c = StateClient(svc.address)
    t0 = time.perf_counter()

    def sampler() -> None:
        while not stop.is_set():
            st = c.stats()
            samples.append((time.perf_counter() - t0, st["blocks_used"], st["namespaces"].get("/mix", 0)))
            time.sleep(0.05)

    def job(i: int, start: float, dur: float, mb: float, dies: bool) -> None:
        time.sleep(max(0.0, start - (time.perf_counter() - t0)))
        jc = StateClient(svc.address)
        path = f"/mix/j{i}"
        ht = jc.open_or_create_hash_table(f"{path}/shuffle")
        n = int(mb * (1 << 20) / 256)
        steps = 10
        for s_ in range(steps):  # grow over the first half of its life
            ht.multi_put({b"k%08d" % j: b"v" * 200 for j in range(s_ * n // steps, (s_ + 1) * n // steps)})
            time.sleep(dur / 2 / steps)
        peaks[i] = jc.status(f"{path}/shuffle")["blocks"]
        time.sleep(dur / 2)
        if not dies:
            jc.remove(path)
        jc.disconnect()  # a job that dies just stops renewing: its lease reclaims the blocks

    threading.Thread(target=sampler, daemon=True).start()
    ts = [threading.Thread(target=job, args=p) for p in plans]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    _until(lambda: not c.exists("/mix"), timeout=30)
    time.sleep(0.2)
    stop.set()
    peak = max(u for _, u, _ in samples)
    total = sum(peaks.values())
    print(f"jobs' peaks: median {sorted(peaks.values())[len(peaks) // 2]} blocks, max {max(peaks.values())}")
    print(f"pool peak {peak} blocks of 1 MiB; sum of the jobs' peaks {total} blocks")
    print(
        f"multiplexing: the pool needed {peak / total:.2f}x what per-job peak provisioning reserves "
        f"({total / peak:.1f}x fewer blocks); {sum(p[4] for p in plans)} jobs died and were reclaimed "
        f"by their lease ({lease_ms} ms + grace)"
    )
    if plot:
        _plot(samples, total, peak, jobs, plot)
    c.disconnect()
    svc.close()


def _plot(samples: list[tuple[float, int, int]], total: int, peak: int, jobs: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = [t for t, _, _ in samples]
    ax.plot(xs, [u for _, u, _ in samples], label="blocks in use (pool)", color="tab:blue")
    ax.axhline(peak, color="tab:blue", linestyle=":", label=f"pool peak: {peak}")
    ax.axhline(total, color="tab:red", linestyle="--", label=f"sum of the jobs' peaks: {total}")
    ax.set_xlabel("seconds")
    ax.set_ylabel("1 MiB blocks")
    ax.set_title(f"taureau.state: {jobs} short jobs sharing one memory pool")
    ax.legend(loc="center right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plot saved to {path}")


SECTIONS = ("throughput", "split", "multiplexing", "transports", "replication", "restart", "jobmix")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--lease-ms", type=int, default=1000)
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections to run")
    ap.add_argument("--jobs", type=int, default=40, help="jobs in the job mix")
    ap.add_argument("--span", type=float, default=20.0, help="seconds the job mix spans")
    ap.add_argument("--plot", default=None, help="save the job mix plot here (PNG)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        ap.error(f"unknown sections {sorted(only - set(SECTIONS))}; pick from {SECTIONS}")
    print(f"cpus: {os.cpu_count()}")
    if only & {"throughput", "split", "multiplexing", "transports"}:
        redis_proc, redis_port = (None, None) if args.no_redis else start_redis()
        if not args.no_redis and redis_proc is None:
            print("redis-server not found (apt-get install -y redis-server): ratios skipped")
        svc = Services(block_size=32 << 20, num_blocks=64, lease_ms=args.lease_ms)
        print(f"taureau.state: controller {svc.address}, memory server in a child process, 64 x 32 MiB")
        try:
            if "throughput" in only:
                throughput(args, svc, redis_port)
            if "split" in only:
                split_time(svc)
            if "multiplexing" in only:
                multiplexing(svc, args.lease_ms)
            if "transports" in only:
                transports(svc)
        finally:
            svc.close()
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait()
    if "replication" in only:
        replication(args.seconds)
    if "restart" in only:
        controller_restart()
    if "jobmix" in only:
        job_mix(args.jobs, args.span, args.plot)


if __name__ == "__main__":
    main()
