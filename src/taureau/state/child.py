"""The memory server a controller's process starts as its child: spawned, adopted after the
controller's process died, stopped."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from taureau.common import errors
from taureau.state.persist import FILE_MODE

# The child dials the controller on a local socket in the state directory, so that when the
# controller's process dies (kill -9 of `taureau standalone`) the child keeps its blocks and
# rejoins through the same path once a new controller listens there (for --rejoin-s, 60 s).
# Its pid is in memory-server.pid: the next start adopts it instead of starting another. A
# clean stop terminates it (ephemeral state ends with the deployment that ran it).
# Where the path would be too long for a unix socket (about 107 bytes), the child is linked
# by a socketpair instead and dies with the controller's process.

PIDFILE = "memory-server.pid"
SOCKET = "controller.sock"
MAX_SOCKET_PATH = 100
STOP_S = 5.0


def running(pid: int) -> bool:
    """True unless `pid` is gone or a zombie (an adopted orphan's reaper is not us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :][:1] not in ("Z", "X")


class MemoryServerChild:
    """Owns the child process (or the orphan adopted from a previous run) and its pid file."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir).resolve()
        self.socket_path = str(self.dir / SOCKET)
        self.pidfile = self.dir / PIDFILE
        self.proc: asyncio.subprocess.Process | None = None  # a child we started
        self.pid: int | None = None  # the child's pid, ours or adopted

    @property
    def local_socket(self) -> bool:
        return len(self.socket_path.encode()) <= MAX_SOCKET_PATH

    def orphan(self) -> int | None:
        """The pid of a memory server a previous run of this directory left running, if any."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if not running(pid):
            return None
        # A recycled pid is someone else: ours carries the memory-server command and our socket.
        if b"memory-server" not in cmdline or self.socket_path.encode() not in cmdline:
            return None
        return pid

    def adopt(self, pid: int) -> None:
        self.pid = pid

    async def spawn(self, args: list[str], pass_fd: int | None = None) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taureau.cli.state_cmd", "memory-server", *args,
            pass_fds=(pass_fd,) if pass_fd is not None else (),
        )  # fmt: skip
        self.pid = self.proc.pid
        fd = os.open(self.pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        with open(fd, "w") as f:
            f.write(f"{self.pid}\n")

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.returncode is None
        return self.pid is not None and running(self.pid)

    async def exited(self) -> None:
        """Return when the child is gone (ours: waited for; adopted: polled)."""
        if self.proc is not None:
            await self.proc.wait()
            return
        while self.alive():
            await asyncio.sleep(0.1)

    async def wait_registered(self, wait: asyncio.Future[None]) -> None:
        """Wait for `wait` (the controller seeing the child serve), failing early if it exits."""
        exited = asyncio.ensure_future(self.exited())
        try:
            await asyncio.wait([wait, exited], return_when=asyncio.FIRST_COMPLETED)
            if not wait.done():
                code = self.proc.returncode if self.proc is not None else "unknown"
                raise errors.StateUnavailableError(f"memory server exited with code {code}")
            wait.result()  # StateUnavailableError if it did not register in time
        finally:
            wait.cancel()
            exited.cancel()

    def kill(self) -> None:
        if self.pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def stop(self) -> None:
        """Terminate the child (SIGKILL if it does not go in STOP_S) and forget its pid."""
        if self.pid is not None and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.exited(), STOP_S)
            except TimeoutError:
                self.kill()
                await self.exited()
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
