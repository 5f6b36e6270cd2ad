"""kill -9 of a controller process in the middle of a job: restarted, the job's data is all there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from taureau.state import StateClient
from taureau.state.child import running
from taureau.testing.ports import free_port
from tests.e2e.harness import Standalone
from tests.state.test_durable import check, fill

CMD = [sys.executable, "-m", "taureau.cli.state_cmd"]


def start_controller(port: int, data_dir) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*CMD, "state-controller", "--port", str(port), "--data-dir", str(data_dir), "--rejoin-ms", "20000"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.startswith("state controller on"), f"controller did not start: {line!r}"
    return proc


def start_memory_server(port: int, data_dir) -> subprocess.Popen:
    args = ["--controller", f"127.0.0.1:{port}", "--block-size", "64KiB", "--blocks", "32",
            "--internal-secret-file", str(data_dir / "internal.key")]
    return subprocess.Popen([*CMD, "memory-server", *args])


def test_kill_9_of_the_controller_mid_job_loses_nothing(tmp_path):
    port = free_port()
    procs = [start_controller(port, tmp_path / "ctl")]
    procs += [start_memory_server(port, tmp_path / "ctl") for _ in range(2)]
    try:
        c = StateClient(f"127.0.0.1:{port}")
        deadline = time.monotonic() + 20
        while c.stats()["servers"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        acked = {"ht": [], "q": [], "f": []}
        failures: list[BaseException] = []

        def job() -> None:
            try:
                jc = StateClient(f"127.0.0.1:{port}")
                ht = jc.open_or_create_hash_table("/jobs/k9/ht")
                q = jc.open_or_create_queue("/jobs/k9/q")
                f = jc.open_or_create_file("/jobs/k9/f")
                for i in range(2500):  # several splits, appends and extents on both sides of the kill
                    ht.put(b"key%05d" % i, b"v" * 100)
                    acked["ht"].append(b"key%05d" % i)
                    q.enqueue(b"item%05d" % i + b"x" * 60)
                    acked["q"].append(b"item%05d" % i + b"x" * 60)
                    f.write(b"%08d" % i * 8)
                    acked["f"].append(b"%08d" % i * 8)
            except BaseException as e:  # noqa: BLE001 - reported below
                failures.append(e)

        t = threading.Thread(target=job)
        t.start()
        while len(acked["ht"]) < 800:
            time.sleep(0.01)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()
        time.sleep(0.3)
        procs[0] = start_controller(port, tmp_path / "ctl")
        t.join(120)
        assert not failures and len(acked["ht"]) == 2500
        ht = c.open_hash_table("/jobs/k9/ht")
        assert ht.multi_get(acked["ht"]) == [b"v" * 100] * 2500 and len(ht) == 2500
        q = c.open_queue("/jobs/k9/q")
        assert [q.dequeue() for _ in range(2500)] == acked["q"]
        assert c.open_file("/jobs/k9/f").read() == b"".join(acked["f"])

        def listed() -> int:
            return sum(c.status(f"/jobs/k9/{n}")["blocks"] for n in ("ht", "q", "f"))

        deadline = time.monotonic() + 10  # a drained queue segment is unlisted a moment before it is freed
        while c.stats()["blocks_used"] != listed():
            assert time.monotonic() < deadline, f"{c.stats()['blocks_used']} blocks used, {listed()} listed"
            time.sleep(0.05)
        assert c.stats()["servers"] == 2
        c.disconnect()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


def test_a_second_controller_on_the_same_data_directory_is_refused(tmp_path):
    first = start_controller(free_port(), tmp_path)
    try:
        second = subprocess.run(
            [*CMD, "state-controller", "--port", str(free_port()), "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1 and "in use by another controller" in second.stderr
    finally:
        first.terminate()
        first.wait(10)


def test_kill_9_of_standalone_then_a_restart_has_every_structure_and_its_data(tmp_path):
    server = Standalone(tmp_path / "data", "--no-functions", "--state-block-size", "256KiB", state=True)
    server.start()
    pidfile = tmp_path / "data" / "state" / "memory-server.pid"
    try:
        c = StateClient(f"127.0.0.1:{server.state_port}")
        fill(c)
        child = int(pidfile.read_text())
        server.kill()  # the standalone process only: its memory server child keeps the blocks
        os.kill(child, 0)
        server.restart()
        assert int(pidfile.read_text()) == child  # adopted, not replaced
        check(c)  # the same client, reconnected
        c.disconnect()
    finally:
        assert server.stop() == 0
    assert not pidfile.exists()
    deadline = time.monotonic() + 10
    while running(child):  # a clean stop ends the child (ephemeral state ends with it)
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.restart()  # after a clean stop the namespace is empty again: no `lost` leftovers
    try:
        with StateClient(f"127.0.0.1:{server.state_port}") as c:
            assert not c.exists("/jobs/a")
            c.open_or_create_hash_table("/jobs/a/ht").put(b"fresh", b"1")
    finally:
        assert server.stop() == 0
