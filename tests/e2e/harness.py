"""Start and stop a real `taureau standalone` subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pulsar
from pulsar import ConsumerType, InitialPosition

from taureau.testing.ports import free_port

READY = "Taureau standalone ready"


def spawn_until_ready(args: list[str], ready_line: str, output: list[str], timeout: float, what: str,
                      env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `args`, collecting its output lines into `output`, and return once a line holds
    `ready_line`; kill -9 it and raise RuntimeError (with its last lines) if it exits or takes
    longer than `timeout` seconds."""
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )
    ready = threading.Event()

    def pump(stream) -> None:
        for line in stream:
            output.append(line)
            if ready_line in line:
                ready.set()

    threading.Thread(target=pump, args=(proc.stdout,), daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.02):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{what} did not start:\n" + "".join(output[-50:]))
    return proc


class Standalone:
    """One `taureau standalone` process on free ports with its own data directory."""

    def __init__(self, data_dir: Path, *extra: str, state: bool = False, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.extra = list(extra)
        self.state = state
        self.broker_port = free_port()
        self.web_port = free_port()
        self.state_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.output: list[str] = []
        self.startup_seconds = 0.0

    @property
    def service_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.broker_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self, timeout: float = 30.0) -> Standalone:
        args = [
            sys.executable,
            "-m",
            "taureau.cli.main",
            "standalone",
            "--data-dir",
            str(self.data_dir),
            "--broker-port",
            str(self.broker_port),
            "--web-port",
            str(self.web_port),
            "--bind-address",
            "127.0.0.1",
            "--advertised-address",
            "127.0.0.1",
            "--state-port",
            str(self.state_port),
            *([] if self.state else ["--no-state"]),
            *self.extra,
        ]
        started = time.monotonic()
        self.proc = spawn_until_ready(args, READY, self.output, timeout, "standalone", self.env)
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def rss_mib(self) -> float:
        """The process's resident memory now, in MiB (Linux /proc)."""
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError(f"process {self.proc.pid} has exited")

    def dump_stacks(self, wait: float = 1.0) -> str:
        """What the process is waiting on: its asyncio tasks (SIGUSR2, needs a free loop) and
        every thread's stack (SIGUSR1, printed even with the loop stuck), from its output."""
        assert self.proc is not None
        first = len(self.output)
        self.proc.send_signal(signal.SIGUSR2)
        time.sleep(wait / 2)
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(wait / 2)
        return "".join(self.output[first:])

    @contextlib.contextmanager
    def stacks_on_timeout(self) -> Iterator[None]:
        """A client call timing out inside the block re-raises with the server's last output
        lines and its stacks added as notes: a stall seen once in CI then says what the server
        logged and where it waited."""
        try:
            yield
        except TimeoutError as exc:
            exc.add_note("last output of the standalone:\n" + "".join(self.output[-40:]))
            exc.add_note(self._progress_note())
            exc.add_note(f"stacks of the standalone when the client timed out:\n{self.dump_stacks()}")
            exc.add_note(f"native stacks (py-spy):\n{self.native_stacks()}")
            raise

    def journal_batches(self) -> float | None:
        """Journal batches the bookie has delivered so far (its /metrics), None if unreadable."""
        try:
            text = httpx.get(f"{self.admin_url}/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        counts = [line.rsplit(" ", 1)[1] for line in text.splitlines()
                  if line.startswith("taureau_journal_add_seconds_count")]
        return sum(map(float, counts)) if counts else None

    def _progress_note(self, seconds: float = 3.0) -> str:
        """Whether the server still moves after a client gave up: a stack dump is a snapshot,
        and work in flight looks parked in it (a client's own short deadline was once read as
        a stalled bookie from such dumps)."""
        before = self.journal_batches()
        time.sleep(seconds)
        after = self.journal_batches()
        if before is None or after is None:
            return "progress after the timeout: /metrics unreadable"
        return f"journal batches delivered in the {seconds:.0f} s after the timeout: {after - before:.0f}"

    def native_stacks(self) -> str:
        """Every thread's stack down into C (py-spy dump --native): whether a thread waits on a
        lock, for the GIL or in a system call, which the Python-level dumps cannot tell."""
        assert self.proc is not None
        spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
        if not os.path.exists(spy):
            return "(py-spy is not installed)"
        done = subprocess.run([spy, "dump", "--native", "--pid", str(self.proc.pid)],
                              capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self) -> Standalone:
        return self.start()


class RssPeak:
    """Samples a standalone's RSS every 50 ms in a thread until `stop()`, which returns the
    highest value seen (MiB)."""

    def __init__(self, server: Standalone) -> None:
        self.server = server
        self.peak = server.rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self.server.rss_mib())
            except (RuntimeError, AssertionError, FileNotFoundError):
                return  # the process is gone

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


async def append_below_the_broker(
    data_dir, storage_name: str, datas: list[bytes], subscriptions: list[str]
) -> None:
    """Write entries straight into a topic's managed ledger, as an older broker might have,
    with durable cursors that keep them (no retention otherwise)."""
    from taureau.metadata.factory import open_metadata_store
    from taureau.storage.ledger.local import open_local_ledger_client
    from taureau.storage.managed_ledger.api import InitialPosition
    from taureau.storage.managed_ledger.factory import ManagedLedgerFactory

    store = await open_metadata_store(None, str(data_dir))
    ledgers = await open_local_ledger_client(str(data_dir), store, num_bookies=1)
    factory = ManagedLedgerFactory(store, ledgers)
    try:
        ml = await factory.open(storage_name)
        for name in subscriptions:
            await ml.open_cursor(name, InitialPosition.EARLIEST)
        for data in datas:
            await ml.add_entry(data)
    finally:
        await factory.close()
        await ledgers.close()
        await store.close()


def receive_until(consumer: Any, body: bytes, seen: set[bytes]) -> None:
    """Receive (and acknowledge) until `body` comes; before it, only redeliveries of what came
    already (a consumer whose topic was closed or moved gets its unacknowledged messages again)."""
    while True:
        msg = consumer.receive(20_000)
        consumer.acknowledge(msg)
        if msg.data() == body:
            seen.add(body)
            return
        assert msg.data() in seen, f"{msg.data()!r} came before {body!r}"


def receive_all(
    client: Any, topic: str, subscription: str, sub_type: Any = ConsumerType.Exclusive, expect: int | None = None
) -> list[bytes]:
    """Everything a subscription from Earliest gets: until 1.5 s pass with nothing, or (with
    `expect`) until that many came and 0.3 s more bring nothing else."""
    consumer = client.subscribe(
        topic, subscription, consumer_type=sub_type, initial_position=InitialPosition.Earliest
    )
    got = []
    try:
        while True:
            quiet_ms = 300 if expect is not None and len(got) >= expect else 1500
            msg = consumer.receive(timeout_millis=quiet_ms)
            got.append(msg.data())
            consumer.acknowledge(msg)
    except pulsar.Timeout:
        pass
    consumer.close()
    return got
