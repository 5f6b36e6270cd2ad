"""Functions: what a function costs against doing the same by hand, and how fast it answers.

In one run, against one `taureau standalone` it starts (fsync on):

1. throughput of an identity function (one instance, then `--parallelism 2`) against a
   hand-written consume -> produce -> ack loop with the official client on the same kind of
   topics, in as many processes (target: the function at 0.8x the loop or better);
2. latency of a two-function chain (topic -> f -> topic -> g -> topic) at a moderate rate,
   p50 / p99 (targets 5 ms / 20 ms);
3. HTTP invoke of a warm function, p50 / p99 (target p50 under 2 ms);
4. the time from `functions create` to the first output (target under 1 s);
5. the wake-up from zero instances to the first output (target under 300 ms);
6. `incr_counter` and `put_state` operations per second from inside a function.

    python bench/functions.py                  # about a minute on 2 cores
    python bench/functions.py --messages 50000 --chain-seconds 20
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pulsar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.base import free_port, spawn  # noqa: E402

IDENTITY = "def process(x):\n    return x\n"
COUNTERS = (
    "import time\n\n"
    "def process(n, context):\n"
    "    n = int(n)\n"
    "    started = time.perf_counter()\n"
    "    for i in range(n):\n"
    "        context.incr_counter('hits', 1)\n"
    "    incr = n / (time.perf_counter() - started)\n"
    "    started = time.perf_counter()\n"
    "    for i in range(n):\n"
    "        context.put_state('k%d' % (i % 100), b'v' * 100)\n"
    "    put = n / (time.perf_counter() - started)\n"
    "    return '%.0f %.0f' % (incr, put)\n"
)
LOG = pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)


class Standalone:
    def __init__(self, workdir: Path) -> None:
        self.port, self.web = free_port(), free_port()
        log = workdir / "taureau.log"
        cmd = [sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(workdir / "data"),
               "--broker-port", str(self.port), "--web-port", str(self.web), "--state-port", str(free_port()),
               "--bind-address", "127.0.0.1", "--advertised-address", "127.0.0.1"]
        self.proc = spawn(cmd, log)
        deadline = time.monotonic() + 60
        while "Taureau standalone ready" not in log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text(errors="replace"))
            time.sleep(0.05)
        self.url = f"pulsar://127.0.0.1:{self.port}"
        self.admin = f"http://127.0.0.1:{self.web}"
        self.http = httpx.Client(base_url=self.admin, timeout=60)

    def create(self, name: str, code: str, **config) -> None:
        config = {"className": "fn", "tenant": "public", "namespace": "default", "name": name, **config}
        r = self.http.post(f"/admin/v3/functions/public/default/{name}", files={"data": ("fn.py", code.encode())},
                           data={"functionConfig": json.dumps(config)})
        r.raise_for_status()

    def status(self, name: str) -> dict:
        return self.http.get(f"/admin/v3/functions/public/default/{name}/status").json()

    def wait_running(self, name: str, n: int = 1) -> None:
        deadline = time.monotonic() + 60
        while self.status(name)["numRunning"] < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {self.status(name)}")
            time.sleep(0.02)

    def delete(self, name: str) -> None:
        self.http.delete(f"/admin/v3/functions/public/default/{name}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def preload(url: str, topic: str, n: int, size: int = 100) -> None:
    client = pulsar.Client(url, logger=LOG)
    producer = client.create_producer(topic, batching_enabled=True, batching_max_publish_delay_ms=1,
                                      block_if_queue_full=True)
    for _ in range(n):
        producer.send_async(b"x" * size, None)
    producer.flush()
    client.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes have used so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def drain_rate(url: str, topic: str, n: int, pids: list[int], timeout_s: float = 300) -> tuple[float, float]:
    """Messages/s from the first to the n-th message arriving on `topic` (read from Earliest),
    and the CPU microseconds per message the processes `pids` spent in that span (the cost of
    a message, which the machine's other load does not change much)."""
    client = pulsar.Client(url, logger=LOG)
    consumer = client.subscribe(topic, "bench", initial_position=pulsar.InitialPosition.Earliest,
                                receiver_queue_size=5000)
    first = last = 0.0
    cpu_first = cpu_last = 0.0
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {got} of {n} messages on {topic}")
        try:
            message = consumer.receive(5000)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(message)
        got += 1
        last = time.monotonic()
        if got == 1:
            first, cpu_first = last, cpu_seconds(pids)
        elif got == n:
            cpu_last = cpu_seconds(pids)
    client.close()
    rate = (n - 1) / (last - first) if last > first else float("inf")
    return rate, (cpu_last - cpu_first) / (n - 1) * 1e6


def hand_loop(url: str, src: str, dst: str, stop_after: int) -> None:
    """The peer: what a user writes without functions (same settings as a function instance)."""
    client = pulsar.Client(url, logger=LOG)
    consumer = client.subscribe(src, "hand", consumer_type=pulsar.ConsumerType.Shared,
                                initial_position=pulsar.InitialPosition.Earliest, receiver_queue_size=1000)
    producer = client.create_producer(dst, batching_enabled=True, batching_max_publish_delay_ms=1,
                                      compression_type=pulsar.CompressionType.LZ4, block_if_queue_full=True,
                                      send_timeout_millis=0)
    done = 0
    try:
        while done < stop_after:
            try:
                message = consumer.receive(2000)
            except pulsar.Timeout:
                break
            producer.send_async(message.data(), lambda res, _mid, m=message: consumer.acknowledge(m))
            done += 1
        producer.flush()
    finally:
        client.close()


def throughput(server: Standalone, n: int, instances: int, tag: str) -> tuple[tuple[float, float], ...]:
    """((function msgs/s, CPU us/msg), (hand-written loop msgs/s, CPU us/msg))."""
    fn_in, fn_out = f"fn-{tag}-in", f"fn-{tag}-out"
    preload(server.url, fn_in, n)
    server.create(f"identity-{tag}", IDENTITY, inputs=[fn_in], output=fn_out, parallelism=instances,
                  subscriptionPosition="Earliest")
    server.wait_running(f"identity-{tag}", instances)
    pids = [i["status"]["pid"] for i in server.status(f"identity-{tag}")["instances"]]
    fn = drain_rate(server.url, fn_out, n, pids)
    server.delete(f"identity-{tag}")

    hand_in, hand_out = f"hand-{tag}-in", f"hand-{tag}-out"
    preload(server.url, hand_in, n)
    spawn = mp.get_context("spawn")  # a forked child would inherit the client library's threads
    loops = [spawn.Process(target=hand_loop, args=(server.url, hand_in, hand_out, n)) for _ in range(instances)]
    for p in loops:
        p.start()
    hand = drain_rate(server.url, hand_out, n, [p.pid for p in loops if p.pid])
    for p in loops:
        p.join(30)
    return fn, hand


def chain_latency(server: Standalone, rate: int, seconds: float) -> list[float]:
    server.create("chain-f", IDENTITY, inputs=["chain-a"], output="chain-b")
    server.create("chain-g", IDENTITY, inputs=["chain-b"], output="chain-c")
    server.wait_running("chain-f")
    server.wait_running("chain-g")
    client = pulsar.Client(server.url, logger=LOG)
    out = client.subscribe("chain-c", "bench")
    producer = client.create_producer("chain-a", batching_enabled=False)
    latencies: list[float] = []
    total = int(rate * seconds)
    warmup = min(200, total // 10)
    for i in range(total):
        producer.send_async(str(time.perf_counter()).encode(), None)
        next_at = time.perf_counter() + 1 / rate
        while time.perf_counter() < next_at:
            try:
                message = out.receive(1)
            except pulsar.Timeout:
                continue
            out.acknowledge(message)
            if i > warmup:
                latencies.append((time.perf_counter() - float(message.data())) * 1000)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            message = out.receive(200)
        except pulsar.Timeout:
            break
        out.acknowledge(message)
        latencies.append((time.perf_counter() - float(message.data())) * 1000)
    client.close()
    return latencies


def invoke_latency(server: Standalone, calls: int) -> list[float]:
    server.create("echo", IDENTITY)
    server.wait_running("echo")
    out = []
    with httpx.Client(base_url=server.admin) as http:
        for i in range(calls + 100):
            started = time.perf_counter()
            r = http.post("/functions/public/default/echo", content=b"ping")
            if i >= 100:  # warm-up first
                out.append((time.perf_counter() - started) * 1000)
            assert r.content == b"ping"
    return out


def create_to_first_output(server: Standalone) -> float:
    preload(server.url, "fresh-in", 1)
    client = pulsar.Client(server.url, logger=LOG)
    out = client.subscribe("fresh-out", "bench")
    started = time.perf_counter()
    server.create("fresh", IDENTITY, inputs=["fresh-in"], output="fresh-out", subscriptionPosition="Earliest")
    out.receive(30_000)
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed


def wake_up(server: Standalone, trials: int) -> list[float]:
    server.create("sleeper", IDENTITY, inputs=["sleep-in"], output="sleep-out", minInstances=0, maxInstances=1,
                  idleTimeoutMs=500)
    client = pulsar.Client(server.url, logger=LOG)
    out = client.subscribe("sleep-out", "bench")
    producer = client.create_producer("sleep-in", batching_enabled=False)
    results = []
    for _ in range(trials):
        deadline = time.monotonic() + 30
        while server.status("sleeper")["numInstances"] != 0:  # idle back to zero
            if time.monotonic() > deadline:
                raise RuntimeError("the function did not scale to zero")
            time.sleep(0.05)
        started = time.perf_counter()
        producer.send(b"wake")
        out.acknowledge(out.receive(30_000))
        results.append((time.perf_counter() - started) * 1000)
    client.close()
    return results


def state_ops(server: Standalone, n: int) -> tuple[float, float]:
    server.create("counters", COUNTERS)
    server.wait_running("counters")
    r = server.http.post("/functions/public/default/counters", content=str(n).encode())
    r.raise_for_status()
    incr, put = r.content.split()
    return float(incr), float(put)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000, help="messages per throughput run")
    parser.add_argument("--chain-rate", type=int, default=200, help="msgs/s offered to the chain")
    parser.add_argument("--chain-seconds", type=float, default=10.0)
    parser.add_argument("--invokes", type=int, default=2000)
    parser.add_argument("--state-ops", type=int, default=2000)
    parser.add_argument("--wake-trials", type=int, default=5)
    parser.add_argument("--parts", default="throughput,chain,invoke,create,wake,state",
                        help="comma-separated subset to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        server = Standalone(Path(tmp))
        try:
            print(f"taureau standalone on {server.url} (journal fsync on)", flush=True)
            rows = []
            for instances in (1, 2) if "throughput" in parts else ():
                print(f"throughput, {instances} instance(s) ...", flush=True)
                (fn, fn_cpu), (hand, hand_cpu) = throughput(server, args.messages, instances, f"p{instances}")
                rows.append((instances, fn, hand))
                print(f"  function {fn:,.0f} msg/s   hand-written loop {hand:,.0f} msg/s   ratio {fn / hand:.2f}x"
                      f"   (target >= 0.8x)", flush=True)
                print(f"  CPU per message: function {fn_cpu:.1f} us   loop {hand_cpu:.1f} us   "
                      f"ratio {hand_cpu / fn_cpu:.2f}x", flush=True)
            if "chain" in parts:
                print(f"chain f -> g at {args.chain_rate} msg/s for {args.chain_seconds:.0f}s ...", flush=True)
                chain = chain_latency(server, args.chain_rate, args.chain_seconds)
                print(f"  p50 {percentile(chain, 50):.2f} ms   p99 {percentile(chain, 99):.2f} ms   "
                      f"({len(chain)} messages; targets 5 / 20 ms)", flush=True)
            if "invoke" in parts:
                print(f"HTTP invoke x{args.invokes} ...", flush=True)
                invoke = invoke_latency(server, args.invokes)
                print(f"  p50 {percentile(invoke, 50):.2f} ms   p99 {percentile(invoke, 99):.2f} ms   "
                      f"(target p50 < 2 ms)", flush=True)
            if "create" in parts:
                created = create_to_first_output(server)
                print(f"functions create -> first output: {created * 1000:.0f} ms (target < 1000 ms)", flush=True)
            if "wake" in parts:
                wakes = wake_up(server, args.wake_trials)
                print(f"wake-up from zero instances -> first output: median {statistics.median(wakes):.0f} ms, "
                      f"max {max(wakes):.0f} ms over {len(wakes)} trials (target < 300 ms): "
                      + ", ".join(f"{w:.0f}" for w in wakes), flush=True)
            if "state" in parts:
                incr, put = state_ops(server, args.state_ops)
                print(f"state from inside a function: incr_counter {incr:,.0f} ops/s, put_state {put:,.0f} ops/s "
                      f"(each acknowledged after the journal fsync)", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
