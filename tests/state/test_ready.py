"""Ready means ready: the controller's port accepts only once a create can be served."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

import pytest

from taureau.common import errors
from taureau.state import StateClient
from taureau.state.service import start_state_services
from taureau.testing.ports import free_port

STARTS = 3  # the issue saw 8 of 8 fresh starts fail this way: three catch it and keep the suite short


def wait_accepting(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Poll the port the way a script or readiness probe does: connected once is ready."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, f"standalone exited with {proc.returncode}"
            assert time.monotonic() < deadline, "the state port never opened"
            time.sleep(0.002)


def test_standalone_serves_a_create_the_moment_its_state_port_accepts(tmp_path):
    outcomes = []
    for i in range(STARTS):
        port = free_port()
        args = [
            sys.executable, "-m", "taureau.cli.main", "standalone", "--data-dir", str(tmp_path / f"d{i}"),
            "--broker-port", "0", "--web-port", "0", "--bind-address", "127.0.0.1",
            "--advertised-address", "127.0.0.1", "--state-port", str(port), "--no-functions",
            "--state-block-size", "1MiB", "--state-blocks", "4",
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_accepting(port, proc)
            with StateClient(f"127.0.0.1:{port}", timeout=10) as c:
                try:
                    ht = c.open_or_create_hash_table("/jobs/first/out")
                    ht.put(b"k", b"v")
                    outcomes.append(ht.get(b"k"))
                except errors.OutOfMemoryError as e:
                    outcomes.append(repr(e))
        finally:
            proc.terminate()
            proc.wait(30)
    assert outcomes == [b"v"] * STARTS


def test_a_memory_server_that_cannot_start_leaves_no_open_port(tmp_path):
    port = free_port()

    async def main() -> None:
        with pytest.raises(errors.StateUnavailableError, match="exited with code"):
            await start_state_services(
                controller_port=port, block_size=100, num_blocks=4, lease_ms=5000, data_dir=str(tmp_path)
            )  # 100-byte blocks: the child refuses to start

    asyncio.run(main())
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
