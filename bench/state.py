"""Benchmark taureau.state against Redis (Debian's redis-server, redis-py) on loopback.

Run: /work/venv/bin/python bench/state.py [--seconds 1.5] [--no-redis]
Prints ops/s for get/put of 64 B and 4 KiB values, single and batched (100 per request,
redis-py pipelines and MGET/MSET for Redis), 1 and 8 client threads, with the ratio to
Redis; then the time to split a full 32 MiB block, memory multiplexing across two jobs,
and the two client transports (plain sockets vs an event-loop thread).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from taureau.state import StateClient
from taureau.state.service import start_state_services

BATCH = 100
KEYS = 2000  # keys per thread: the working set each thread cycles over


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--lease-ms", type=int, default=1000)
    args = ap.parse_args()
    redis_proc, redis_port = (None, None) if args.no_redis else start_redis()
    if not args.no_redis and redis_proc is None:
        print("redis-server not found (apt-get install -y redis-server): ratios skipped")
    svc = Services(block_size=32 << 20, num_blocks=64, lease_ms=args.lease_ms)
    print(f"taureau.state: controller {svc.address}, memory server in a child process, 64 x 32 MiB")
    print(f"cpus: {os.cpu_count()}")
    try:
        throughput(args, svc, redis_port)
        split_time(svc)
        multiplexing(svc, args.lease_ms)
        transports(svc)
    finally:
        svc.close()
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait()


if __name__ == "__main__":
    main()
