"""Functions across workers: throughput of a function spread over two `taureau functions-worker`
processes against the same function on one worker, and the outage when a worker is killed.

Every run starts a private ZooKeeper (Debian's `zookeeper` package), two bookies and a
`taureau broker` (E2/Qw2/Qa2), then workers of one cluster (metadata session timeout 2 s).
The function is tests/e2e/function_examples/exclamation.py with `--parallelism 2`.

- Throughput: N messages of 100 bytes published asynchronously, timed until the N outputs are
  received. Peer: the same function with both instances on one worker (the second worker not
  started yet), in the same run.
- Outage: a producer sends a message every 10 ms; a worker is killed with SIGKILL; the outage is
  the longest gap between two outputs around the kill. Half: the killed worker ran one of the
  two instances (the other goes on). All: it ran both (everything moves to the other worker).
  Peer: a worker alone (its own storage, no ZooKeeper) with the same function, killed with
  SIGKILL and restarted at once, as a process supervisor would.

    python bench/functions_cluster.py                  # 5,000 messages
    python bench/functions_cluster.py --messages 20000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import pulsar  # noqa: E402

from taureau.testing.zookeeper import ZooKeeperServer  # noqa: E402
from tests.e2e.bookies import BookieProcess  # noqa: E402
from tests.e2e.brokers import BrokerProcess  # noqa: E402
from tests.e2e.function_workers import READY, FunctionsWorkerProcess  # noqa: E402
from tests.e2e.functions_helpers import EXAMPLES, taureau  # noqa: E402
from tests.e2e.harness import free_port  # noqa: E402
from tests.e2e.processes import ServerProcess  # noqa: E402


def _client(url: str) -> pulsar.Client:
    return pulsar.Client(url, operation_timeout_seconds=30, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))


def _create(worker, name: str) -> None:
    code, _, err = taureau(worker, "create", "--name", name, "--py", str(EXAMPLES / "exclamation.py"),
                           "--classname", "exclamation.Exclamation", "--inputs", f"{name}-in",
                           "--output", f"{name}-out", "--parallelism", "2")
    if code != 0:
        raise RuntimeError(err)


def _running(worker, name: str) -> dict[int, str]:
    response = httpx.get(f"{worker.admin_url}/admin/v3/functions/public/default/{name}/status", timeout=10)
    if response.status_code != 200:
        return {}
    return {e["instanceId"]: e["status"]["workerId"] for e in response.json()["instances"] if e["status"]["running"]}


def _wait(check, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen")
        time.sleep(0.1)


def throughput(service_url: str, name: str, messages: int) -> float:
    client = _client(service_url)
    try:
        consumer = client.subscribe(f"{name}-out", f"bench-{time.monotonic_ns()}",
                                    initial_position=pulsar.InitialPosition.Latest)
        producer = client.create_producer(f"{name}-in", batching_enabled=True, batching_max_publish_delay_ms=1,
                                          block_if_queue_full=True)
        payload = b"x" * 99
        started = time.monotonic()
        for _ in range(messages):
            producer.send_async(payload, None)
        producer.flush()
        for received in range(messages):
            try:
                consumer.acknowledge(consumer.receive(60_000))
            except pulsar.Timeout:
                raise RuntimeError(f"{name}: {received} of {messages} outputs came") from None
        return messages / (time.monotonic() - started)
    finally:
        client.close()


def outage_s(service_url: str, name: str, kill) -> float:
    """The longest gap between two outputs from 1 s before `kill()` until outputs have flowed
    for 3 s after the first one that follows it."""
    client = _client(service_url)
    stop = threading.Event()
    arrivals: list[float] = []
    try:
        consumer = client.subscribe(f"{name}-out", f"gap-{time.monotonic_ns()}",
                                    initial_position=pulsar.InitialPosition.Latest)
        producer = client.create_producer(f"{name}-in", batching_enabled=False)

        def produce() -> None:
            while not stop.is_set():
                producer.send_async(b"tick", None)
                time.sleep(0.01)

        def consume() -> None:
            while not stop.is_set():
                try:
                    consumer.acknowledge(consumer.receive(500))
                except pulsar.Timeout:
                    continue
                arrivals.append(time.monotonic())

        threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=consume, daemon=True)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        killed = time.monotonic()
        kill()
        _wait(lambda: any(a > killed for a in arrivals) and arrivals[-1] - min(a for a in arrivals if a > killed) > 3,
              "outputs after the kill")
        stop.set()
        for t in threads:
            t.join(5)
        window = [a for a in arrivals if a > killed - 1.0]
        return max(b - a for a, b in zip(window, window[1:], strict=False))
    finally:
        stop.set()
        client.close()


class LoneWorker(ServerProcess):
    """`taureau functions-worker` alone: its own metadata and bookie in its data directory."""

    def __init__(self, data_dir: Path, broker: BrokerProcess) -> None:
        super().__init__()
        self.web_port = free_port()
        self.args = [sys.executable, "-m", "taureau.cli.main", "functions-worker", "--broker-service-url",
                     broker.service_url, "--broker-admin-url", broker.web_url, "--data-dir", str(data_dir),
                     "--web-port", str(self.web_port), "--bind-address", "127.0.0.1", "--functions-warm-pool", "0"]

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> LoneWorker:
        self.spawn(self.args, READY, 60, "functions worker")
        return self


def run(messages: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="taureau-fnworkers-bench-"))
    zk = ZooKeeperServer(str(root / "zk"))
    zk.start()
    url = f"{zk.url}/fnbench"
    processes: list[ServerProcess] = []

    def start(process):
        processes.append(process.start())
        return process

    try:
        for i in range(2):
            start(BookieProcess(root / f"bookie{i}", url))
        broker = start(BrokerProcess(root / "broker", url))
        w1 = start(FunctionsWorkerProcess(root / "w1", url, broker.service_url, broker.web_url))
        _create(w1, "one")
        _wait(lambda: len(_running(w1, "one")) == 2, "2 instances on one worker")
        one = throughput(broker.service_url, "one", messages)
        taureau(w1, "delete", "--name", "one")

        w2 = start(FunctionsWorkerProcess(root / "w2", url, broker.service_url, broker.web_url))
        _create(w1, "spread")
        _wait(lambda: len(set(_running(w1, "spread").values())) == 2, "2 instances on two workers")
        spread = throughput(broker.service_url, "spread", messages)
        print(f"throughput, --parallelism 2, {messages} messages: on one worker {one:,.0f} msg/s; "
              f"spread over two {spread:,.0f} msg/s ({spread / one:.2f}x)", flush=True)

        half = outage_s(broker.service_url, "spread", w1.kill)
        _wait(lambda: set(_running(w2, "spread").values()) == {w2.worker_id} and len(_running(w2, "spread")) == 2,
              "both instances on w2")
        start(FunctionsWorkerProcess(root / "w3", url, broker.service_url, broker.web_url))
        everything = outage_s(broker.service_url, "spread", w2.kill)

        lone = start(LoneWorker(root / "lone", broker))
        _create(lone, "alone")
        _wait(lambda: len(_running(lone, "alone")) == 2, "the lone worker's instances")

        def kill_and_restart() -> None:
            lone.kill()
            lone.start()

        restarted = outage_s(broker.service_url, "alone", kill_and_restart)
        print(f"outage after kill -9 of a worker (session timeout 2 s): it ran half the instances "
              f"{half:.2f} s; all of them {everything:.2f} s; peer, a worker alone restarted at once "
              f"{restarted:.2f} s ({everything / restarted:.2f}x)", flush=True)
    finally:
        for process in reversed(processes):
            if process.proc is not None:
                process.kill()
        zk.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    run(parser.parse_args().messages)


if __name__ == "__main__":
    main()
