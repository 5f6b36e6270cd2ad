"""The embedded executor's own state store: a controller and a memory server in one child
process, `python -m taureau.analytics.embedded_state DATA_DIR BLOCK_SIZE BLOCKS LEASE_MS own|keep`.

It prints the controller's address and serves until its stdin closes, so it never outlives
the driver that started it (even one killed with SIGKILL); a data directory it was given to
own (a temporary one) it removes as it exits, spill dumps included."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile

from taureau.analytics.errors import BackendError


async def _serve(data_dir: str, block_size: int, blocks: int, lease_ms: int, own_dir: bool) -> None:
    from taureau.state.service import start_state_services

    services = await start_state_services(controller_port=0, block_size=block_size, num_blocks=blocks,
                                          lease_ms=lease_ms, data_dir=data_dir, memory_server_process=False)  # fmt: skip
    print(services.controller_address, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await services.close()
    if own_dir:  # the driver may be dead (SIGKILL): its data, spills included, goes with the store
        shutil.rmtree(data_dir, ignore_errors=True)


class EmbeddedState:
    """Starts the child; `address` is its controller; `close()` stops it and removes its data."""

    def __init__(self, *, block_size: int, blocks: int, lease_ms: int, data_dir: str | None = None) -> None:
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="taureau-analytics-")
        self.capacity = block_size * blocks
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "taureau.analytics.embedded_state", self.data_dir, str(block_size), str(blocks),
             str(lease_ms), "own" if self._own_dir else "keep"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line:
            self.close()
            raise BackendError(f"the embedded state store did not start (exit code {self._proc.poll()})")
        self.address = line

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when this ends
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "own"))
