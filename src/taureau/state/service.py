"""Start the state controller and one memory server for `taureau standalone` (and tests)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import signal
import socket
from pathlib import Path
from typing import IO

from taureau.common import errors
from taureau.common.stack_dump import install_stack_dumps
from taureau.metadata.factory import open_metadata_store
from taureau.metadata.store import MetadataStore
from taureau.state.child import MemoryServerChild
from taureau.state.client_auth import StateAccess
from taureau.state.controller import Controller
from taureau.state.internal_auth import SECRET_FILE, load_or_create_secret
from taureau.state.memory_server import MemoryServer
from taureau.state.persist import make_private_dirs

REGISTER_TIMEOUT_S = 30.0
ADOPT_TIMEOUT_S = 10.0  # for a memory server left by a killed predecessor to rejoin

log = logging.getLogger(__name__)


class StateServices:
    """A running controller plus its first memory server (in-process or a child process)."""

    def __init__(
        self,
        controller: Controller,
        memory_server: MemoryServer | None,
        child: MemoryServerChild | None = None,
    ) -> None:
        self.controller = controller
        self.memory_server = memory_server  # set when it runs in this event loop
        self.child = child  # set when it runs in a child process

    @property
    def proc(self) -> asyncio.subprocess.Process | None:
        return self.child.proc if self.child is not None else None

    @property
    def controller_address(self) -> str:
        return self.controller.address

    async def close(self) -> None:
        """A clean stop: the memory server ends with us, so does the state it held (a killed
        process leaves its child running instead, and the next start adopts it)."""
        try:
            await self.controller.forget_held_by({"unix", "pair"})
        except errors.StateError as e:  # the metadata store is failing: the next start marks them lost
            log.warning("state held by the stopping memory server not dropped: %s", e)
        await self.controller.close()  # first, so the memory server's leaving is not a "loss"
        if self.memory_server is not None:
            await self.memory_server.close()
        if self.child is not None:
            await self.child.stop()


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
    memory_budget: int | None = None,
    access: StateAccess | None = None,
) -> StateServices:
    """Start the controller on this loop and one memory server, then open the client port.

    The memory server registers its pool before the client port exists: once that port
    accepts, a create can be served (a script or probe that connects the moment it opens
    must not get OutOfMemoryError).

    By default the memory server runs in a child process (its data path then gets a core
    and a GIL of its own instead of sharing the broker's; docs/state.md has the numbers),
    linked by a local socket in `data_dir`: if this process is killed, the child keeps its
    blocks and the next start adopts it (child.py), so with a metadata `store` a restart
    loses no structure. `memory_server_process=False` runs it on this loop, linked by a
    socketpair (tests, single-core boxes). With `access` (authentication on), clients must
    authenticate and may use only the paths their role may (client_auth.py).
    """
    make_private_dirs(data_dir)
    # Memory servers started elsewhere join over TCP with a copy of this file.
    secret = load_or_create_secret(data_dir)
    ctl = Controller(lease_ms=lease_ms, data_dir=data_dir, store=store, internal_secret=secret, access=access)
    await ctl.start()
    try:
        if memory_server_process:
            child = MemoryServerChild(data_dir)
            services = StateServices(ctl, None, child)
            args = ["--host", host, "--port", "0", "--advertised-address", advertised_host or host]
            args += ["--block-size", str(block_size), "--blocks", str(num_blocks)]
            if memory_budget is not None:
                args += ["--memory-budget", str(memory_budget)]
            await _start_child(ctl, child, args)
        else:
            ours, theirs = socket.socketpair()
            await ctl.attach(ours)
            ms = MemoryServer(
                controller_sock=theirs, block_size=block_size, num_blocks=num_blocks, host=host,
                exit_on_controller_loss=False, advertised_host=advertised_host, memory_budget=memory_budget,
            )  # fmt: skip
            await ms.start()
            services = StateServices(ctl, ms)
        await ctl.listen(host, controller_port)
        return services
    except BaseException:
        await ctl.close()
        raise


async def _start_child(ctl: Controller, child: MemoryServerChild, args: list[str]) -> None:
    """Adopt the memory server a killed predecessor left, or start one; return once it serves."""
    if not child.local_socket:
        ours, theirs = socket.socketpair()
        try:
            await ctl.attach(ours)
            await child.spawn([*args, "--controller-fd", str(theirs.fileno())], pass_fd=theirs.fileno())
        finally:
            theirs.close()  # the child has its copy; ours must not keep the link open if it dies
        await child.wait_registered(_serving(ctl, REGISTER_TIMEOUT_S))
        return
    await ctl.listen_unix(child.socket_path)
    orphan = child.orphan()
    if orphan is not None:
        child.adopt(orphan)
        try:
            await child.wait_registered(_serving(ctl, ADOPT_TIMEOUT_S))
            log.info("adopted memory server pid %d left by the previous run", orphan)
            return
        except errors.StateUnavailableError as e:
            log.warning("memory server pid %d left by the previous run did not rejoin: %s", orphan, e)
            child.kill()
    # Whatever an earlier child held is gone with it: no need to wait out the rejoin window.
    await ctl.members.forget("unix", "stopped with the process that ran it")
    try:
        await child.spawn([*args, "--controller", f"unix:{child.socket_path}"])
        await child.wait_registered(_serving(ctl, REGISTER_TIMEOUT_S))
    except BaseException:
        child.kill()
        raise


def _serving(ctl: Controller, timeout: float) -> asyncio.Future[None]:
    return asyncio.ensure_future(ctl.wait_for_servers(1, timeout))


async def serve_controller(*, host: str, port: int, data_dir: str, lease_ms: int, rejoin_ms: int) -> None:
    """Run a controller alone until SIGINT/SIGTERM (`taureau state-controller`): its namespace
    in an embedded metadata store under `data_dir`, memory servers joining over the network.
    Its port opens at once: the memory servers it waits for come in through it."""
    root = make_private_dirs(data_dir)
    lock = _lock_dir(root)
    store = await open_metadata_store(None, str(root))
    secret = load_or_create_secret(str(root))
    ctl = Controller(lease_ms=lease_ms, data_dir=str(root), store=store, rejoin_ms=rejoin_ms, internal_secret=secret)
    try:
        await ctl.start()
        await ctl.listen(host, port)
        print(f"state controller on {ctl.address}", flush=True)
        print(f"memory servers join with --internal-secret-file {root / SECRET_FILE}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        install_stack_dumps(loop)
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
