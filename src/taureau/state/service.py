"""Start the state controller and one memory server for `taureau standalone` (and tests)."""

from __future__ import annotations

import asyncio
import fcntl
import signal
import socket
import sys
from pathlib import Path
from typing import IO

from taureau.common import errors
from taureau.metadata.factory import open_metadata_store
from taureau.metadata.store import MetadataStore
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
    store: MetadataStore | None = None,
) -> StateServices:
    """Start the controller on this loop and one memory server, then open the client port.

    The memory server is linked to the controller through a socketpair, so it registers its
    pool before the client port exists: once that port accepts, a create can be served (a
    script or probe that connects the moment it opens must not get OutOfMemoryError).

    By default the memory server runs in a child process: its data path then gets a core
    and a GIL of its own instead of sharing the broker's (docs/state.md has the numbers).
    `memory_server_process=False` runs it on this loop (tests, single-core boxes).
    With a metadata `store`, the namespace survives restarts (the memory server does not: it
    lives and dies with this process, so what it held comes back as lost).
    """
    make_private_dirs(data_dir)
    ctl = Controller(lease_ms=lease_ms, data_dir=data_dir, store=store)
    await ctl.start()
    ours, theirs = socket.socketpair()
    try:
        await ctl.attach(ours)
        if not memory_server_process:
            ms = MemoryServer(
                controller_sock=theirs, block_size=block_size, num_blocks=num_blocks, host=host,
                exit_on_controller_loss=False, advertised_host=advertised_host,
            )  # fmt: skip
            await ms.start()
            services = StateServices(ctl, ms)
        else:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "taureau.cli.state_cmd", "memory-server",
                "--controller-fd", str(theirs.fileno()), "--host", host, "--port", "0",
                "--advertised-address", advertised_host or host,
                "--block-size", str(block_size), "--blocks", str(num_blocks),
                pass_fds=(theirs.fileno(),),
            )  # fmt: skip
            theirs.close()  # the child has its copy; ours must not keep the link open if it dies
            services = StateServices(ctl, None, proc)
            await _wait_registered(ctl, proc)
        await ctl.listen(host, controller_port)
        return services
    except BaseException:
        theirs.close()
        await ctl.close()
        raise


async def _wait_registered(ctl: Controller, proc) -> None:
    """Wait for the child's registration; fail early if it exits, kill it if it is too slow."""
    waiter = asyncio.ensure_future(ctl.wait_for_servers(1, REGISTER_TIMEOUT_S))
    exited = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.wait([waiter, exited], return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            raise errors.StateUnavailableError(f"memory server exited with code {proc.returncode}")
        waiter.result()  # StateUnavailableError if it did not register in time
    except BaseException:
        if proc.returncode is None:
            proc.kill()
        raise
    finally:
        waiter.cancel()
        exited.cancel()


async def serve_controller(*, host: str, port: int, data_dir: str, lease_ms: int, rejoin_ms: int) -> None:
    """Run a controller alone until SIGINT/SIGTERM (`taureau state-controller`): its namespace
    in an embedded metadata store under `data_dir`, memory servers joining over the network.
    Its port opens at once: the memory servers it waits for come in through it."""
    root = make_private_dirs(data_dir)
    lock = _lock_dir(root)
    store = await open_metadata_store(None, str(root))
    ctl = Controller(lease_ms=lease_ms, data_dir=str(root), store=store, rejoin_ms=rejoin_ms)
    try:
        await ctl.start()
        await ctl.listen(host, port)
        print(f"state controller on {ctl.address}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await ctl.close()
        await store.close()
        lock.close()


def _lock_dir(root: Path) -> IO[str]:
    """Hold an exclusive lock on the data directory: two controllers writing one metadata log
    would corrupt it (the catalog's ownership node only guards one store)."""
    f = open(root / "LOCK", "a+")  # noqa: SIM115 - held open while the controller runs
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise errors.StateUnavailableError(f"{root} is in use by another controller") from None
    return f
