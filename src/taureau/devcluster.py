"""`taureau cluster up`: a local dev cluster on one machine: a private ZooKeeper (Debian's
`zookeeper` package, as the tests run it), N bookies, M brokers and K function workers as
child processes.

Children run in their own sessions, so Ctrl-C reaches this process only, which stops them in
dependency order: function workers, brokers (their topics closed, ledgers sealed), then
bookies, then ZooKeeper.
If this process is killed outright, the brokers and bookies get SIGTERM from the kernel (the
ZooKeeper, started by the test helper, does not).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from taureau.testing.ports import free_port
from taureau.testing.zookeeper import ZooKeeperServer

STOP_TIMEOUT_S = 20.0  # per child: SIGTERM, then SIGKILL


class ClusterStartError(RuntimeError):
    """A child did not become ready (its last lines are in the message)."""


@dataclass(slots=True)
class DevClusterConfig:
    data_dir: str = "./cluster-data"
    brokers: int = 3
    bookies: int = 3
    broker_port: int = 6650  # broker i listens on broker_port + i
    web_port: int = 8080  # broker i's admin API on web_port + i
    bookie_port: int = 3181  # bookie i on bookie_port + i
    session_timeout_s: float = 5.0  # how long a killed node keeps its bundles / registration
    quorum: tuple[int, int, int] = (2, 2, 2)  # E/Qw/Qa, capped by the number of bookies
    function_workers: int = 0
    functions_port: int = 6750  # function worker i's REST API on functions_port + i

    def ports(self) -> set[int]:
        """Every port the nodes will listen on."""
        runs = [(self.broker_port, self.brokers), (self.web_port, self.brokers),
                (self.bookie_port, self.bookies), (self.functions_port, self.function_workers)]  # fmt: skip
        return {base + i for base, count in runs for i in range(count)}


@dataclass(slots=True)
class Child:
    name: str
    args: list[str]
    ready_line: str
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)  # the last lines, for an error message

    def start(self, timeout_s: float = 60.0) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        stdin=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        ready = threading.Event()
        threading.Thread(target=self._relay, args=(ready,), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ClusterStartError(f"{self.name} did not start:\n" + "".join(self.lines[-20:]))

    def _relay(self, ready: threading.Event) -> None:
        """Echo the child's lines, prefixed with its name; note when it says it is ready."""
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.lines = [*self.lines[-49:], line]
            print(f"[{self.name}] {line}", end="", flush=True)
            if self.ready_line in line:
                ready.set()

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `cluster up` dies, even by SIGKILL, so no
    broker or bookie outlives it (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def zookeeper_port(config: DevClusterConfig) -> int:
    """A free port for the private ZooKeeper that none of the nodes is configured to take:
    it starts first, and a port merely free now could be one a broker or worker binds later."""
    taken = config.ports()
    while (port := free_port()) in taken:
        pass
    return port


class DevCluster:
    """Owns the ZooKeeper and the children it started; `stop` undoes `start` in reverse."""

    def __init__(self, config: DevClusterConfig) -> None:
        self.config = config
        self.zookeeper = ZooKeeperServer(
            os.path.join(config.data_dir, "zookeeper"), port=zookeeper_port(config), tick_ms=250
        )
        self.bookies: list[Child] = []
        self.brokers: list[Child] = []
        self.workers: list[Child] = []

    @property
    def metadata_url(self) -> str:
        return f"{self.zookeeper.url}/taureau"

    @property
    def service_url(self) -> str:
        """Every broker: the official clients try them in turn."""
        c = self.config
        return "pulsar://" + ",".join(f"127.0.0.1:{c.broker_port + i}" for i in range(c.brokers))

    def start(self) -> None:
        c = self.config
        self.zookeeper.start()
        common = ["--metadata-store", self.metadata_url, "--metadata-session-timeout", str(c.session_timeout_s)]
        taureau = [sys.executable, "-m", "taureau.cli.main"]
        for i in range(c.bookies):
            child = Child(f"bookie-{i}", [*taureau, "bookie", *common, "--port", str(c.bookie_port + i),
                                          "--bind-address", "127.0.0.1", "--advertised-address", "127.0.0.1",
                                          "--data-dir", os.path.join(c.data_dir, f"bookie-{i}")],
                          "Taureau bookie ready")
            self.bookies.append(child)
            child.start()
        e = min(c.quorum[0], c.bookies)
        w, a = min(c.quorum[1], e), min(c.quorum[2], e)
        for i in range(c.brokers):
            child = Child(f"broker-{i}", [*taureau, "broker", *common, "--broker-port", str(c.broker_port + i),
                                          "--web-port", str(c.web_port + i), "--advertised-address", "127.0.0.1",
                                          "--data-dir", os.path.join(c.data_dir, f"broker-{i}"),
                                          "--ensemble-size", str(e), "--write-quorum", str(w), "--ack-quorum", str(a)],
                          "Taureau broker ready")
            self.brokers.append(child)
            child.start()
        for i in range(c.function_workers):
            child = Child(f"functions-{i}", [*taureau, "functions-worker", *common,
                                             "--web-port", str(c.functions_port + i), "--bind-address", "127.0.0.1",
                                             "--advertised-address", "127.0.0.1",
                                             "--broker-service-url", self.service_url,
                                             "--broker-admin-url", f"http://127.0.0.1:{c.web_port}",
                                             "--data-dir", os.path.join(c.data_dir, f"functions-{i}"),
                                             "--ensemble-size", str(e), "--write-quorum", str(w), "--ack-quorum", str(a)],
                          "Taureau functions worker ready")
            self.workers.append(child)
            child.start()

    def urls(self) -> list[str]:
        c = self.config
        return [
            f"service URL    {self.service_url}",
            *(f"admin          http://127.0.0.1:{c.web_port + i}" for i in range(c.brokers)),
            *(f"functions      http://127.0.0.1:{c.functions_port + i}" for i in range(c.function_workers)),
            *(f"bookie         127.0.0.1:{c.bookie_port + i}" for i in range(c.bookies)),
            f"metadata store {self.metadata_url}",
        ]

    def stop(self) -> None:
        for child in [*reversed(self.workers), *reversed(self.brokers), *reversed(self.bookies)]:
            child.stop()
        self.zookeeper.stop()


def run(config: DevClusterConfig) -> int:
    """Start everything, print the URLs, run until Ctrl-C / SIGTERM, stop everything. Exit 1
    when something did not start (what did is stopped first)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cluster = DevCluster(config)
    try:
        try:
            cluster.start()
        except (ClusterStartError, RuntimeError, OSError) as exc:
            print(f"taureau cluster up: {exc}", file=sys.stderr)
            return 1
        print("Taureau cluster ready:\n  " + "\n  ".join(cluster.urls()), flush=True)
        while not stop.wait(0.5):
            for child in [*cluster.workers, *cluster.brokers, *cluster.bookies]:
                process = child.process
                if process is not None and process.poll() is not None:
                    print(f"{child.name} exited with code {process.returncode}", flush=True)
                    child.process = None
        print("Taureau cluster shutting down", flush=True)
        return 0
    finally:
        cluster.stop()
