"""The process runtime (the default): each instance is a child process of the worker.

User code never runs in the worker's (or the broker's) process, and an instance that crashes,
leaks or is killed takes nothing else with it. `warm_pool_size` processes are kept started
and connected ahead of need, so assigning one costs a message, not an interpreter start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from taureau.common.private_files import open_private
from taureau.functions.links import InstanceLink
from taureau.functions.runtime.base import Host, Runtime
from taureau.functions.runtime.isolation import scrubbed_env

log = logging.getLogger("taureau.functions.process")

SPAWN_TIMEOUT_S = 30.0


async def _wait_either(a: asyncio.Future, b: asyncio.Future) -> None:
    await asyncio.wait([a, b], return_when=asyncio.FIRST_COMPLETED)


class ProcessHost:
    def __init__(self, proc: asyncio.subprocess.Process, link: InstanceLink) -> None:
        self.proc = proc
        self.link = link
        self.pid: int | None = proc.pid

    async def wait(self) -> int | None:
        return await self.proc.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


class ProcessRuntime(Runtime):
    kind = "process"

    def __init__(self, channel_path: str, log_path: str, warm_pool_size: int = 1) -> None:
        super().__init__()
        self.channel_path = channel_path
        self.log_path = log_path  # where a process writes before it is given an instance
        self.warm_pool_size = warm_pool_size
        self._warm: list[ProcessHost] = []  # started, connected, not given work
        self._spawning = 0
        self._all: set[asyncio.subprocess.Process] = set()  # every live child, to kill on close
        self._closed = False

    async def start(self) -> None:
        self._top_up()

    async def _spawn(self) -> ProcessHost:
        token, connected = self.new_token()
        with os.fdopen(open_private(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "taureau.functions.instance_main",
                "--channel", self.channel_path, "--token", token, "--parent", str(os.getpid()),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                env=scrubbed_env(os.environ),  # no broker credentials, no function's secrets
            )
        self._all.add(proc)
        asyncio.ensure_future(self._reap(proc))
        waiter = asyncio.ensure_future(proc.wait())
        exited = asyncio.ensure_future(_wait_either(connected, waiter))
        try:
            await asyncio.wait_for(exited, SPAWN_TIMEOUT_S)
        except TimeoutError:
            pass
        if not connected.done():
            waiter.cancel()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            raise RuntimeError(f"instance process did not connect (exit code {proc.returncode}); see {self.log_path}")
        waiter.cancel()
        return ProcessHost(proc, connected.result())

    async def _reap(self, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        self._all.discard(proc)

    def _top_up(self) -> None:
        missing = self.warm_pool_size - len(self._warm) - self._spawning
        for _ in range(max(missing, 0)):
            self._spawning += 1
            asyncio.ensure_future(self._spawn_warm())

    async def _spawn_warm(self) -> None:
        try:
            host = await self._spawn()
            if self._closed:
                host.kill()
            else:
                self._warm.append(host)
        except Exception as exc:
            log.warning("could not start a warm instance process: %s", exc)
        finally:
            self._spawning -= 1

    async def acquire(self) -> Host:
        while self._warm:
            host = self._warm.pop(0)
            if host.proc.returncode is None and not host.link.closed.is_set():
                self._top_up()
                return host
        host = await self._spawn()
        self._top_up()
        return host

    async def close(self) -> None:
        self._closed = True
        for proc in list(self._all):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in list(self._all):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5.0)
