"""Start the state controller and one memory server for `taureau standalone` (and tests)."""

from __future__ import annotations

import asyncio
import sys

from taureau.common import errors
from taureau.state.controller import Controller
from taureau.state.memory_server import MemoryServer
from taureau.state.persist import make_private_dirs

REGISTER_TIMEOUT_S = 30.0


class StateServices:
    """A running controller plus its first memory server (in-process or a child process)."""

    def __init__(self, controller: Controller, memory_server: MemoryServer | None, proc=None) -> None:
        self.controller = controller
        self.memory_server = memory_server  # set when it runs in this event loop
        self.proc = proc  # asyncio subprocess when it runs in a child process

    @property
    def controller_address(self) -> str:
        return self.controller.address

    async def close(self) -> None:
        await self.controller.close()  # first, so the memory server's leaving is not a "loss"
        if self.memory_server is not None:
            await self.memory_server.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_state_services(
    *,
    host: str = "127.0.0.1",
    controller_port: int = 9090,
    block_size: int,
    num_blocks: int,
    lease_ms: int,
    data_dir: str,
    memory_server_process: bool = True,
    advertised_host: str | None = None,
) -> StateServices:
    """Start the controller on this loop and one memory server.

    By default the memory server runs in a child process: its data path then gets a core
    and a GIL of its own instead of sharing the broker's (docs/state.md has the numbers).
    `memory_server_process=False` runs it on this loop (tests, single-core boxes).
    """
    make_private_dirs(data_dir)
    ctl = Controller(lease_ms=lease_ms, data_dir=data_dir)
    await ctl.start(host, controller_port)
    try:
        if not memory_server_process:
            ms = MemoryServer(
                controller=ctl.address, block_size=block_size, num_blocks=num_blocks, host=host,
                exit_on_controller_loss=False, advertised_host=advertised_host,
            )  # fmt: skip
            await ms.start()
            return StateServices(ctl, ms)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taureau.cli.state_cmd", "memory-server",
            "--controller", ctl.address, "--host", host, "--port", "0",
            "--advertised-address", advertised_host or host,
            "--block-size", str(block_size), "--blocks", str(num_blocks),
        )  # fmt: skip
        services = StateServices(ctl, None, proc)
        await _wait_registered(ctl, proc)
        return services
    except BaseException:
        await ctl.close()
        raise


async def _wait_registered(ctl: Controller, proc) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REGISTER_TIMEOUT_S
    while not ctl.alloc.servers:
        if proc.returncode is not None:
            raise errors.StateUnavailableError(f"memory server exited with code {proc.returncode}")
        if loop.time() > deadline:
            proc.kill()
            raise errors.StateUnavailableError("memory server did not register in time")
        await asyncio.sleep(0.02)
