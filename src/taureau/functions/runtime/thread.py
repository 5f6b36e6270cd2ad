"""The thread runtime (opt-in): instances run on threads of the worker's process.

Cheaper than a process per instance, but user code then shares the worker's process: a crash
in native code, or a leak, takes the worker with it, `--ram` cannot be enforced, and a
function stuck in C cannot be killed. Choose it per function with
`--custom-runtime-options '{"runtime": "thread"}'` or for the worker with
`--functions-runtime thread`.
"""

from __future__ import annotations

import asyncio
import threading

from taureau.functions.links import InstanceLink
from taureau.functions.runtime.base import Host, Runtime


class ThreadHost:
    def __init__(self, thread: threading.Thread, link: InstanceLink, done: asyncio.Event) -> None:
        self.thread = thread
        self.link = link
        self.pid: int | None = None
        self._done = done

    async def wait(self) -> int | None:
        await self._done.wait()
        return None

    def kill(self) -> None:
        # A thread cannot be killed: ask it to stop (it finishes the message in hand).
        try:
            self.link.send({"t": "stop"})
        except Exception:
            pass


class ThreadRuntime(Runtime):
    kind = "thread"

    def __init__(self, channel_path: str) -> None:
        super().__init__()
        self.channel_path = channel_path

    async def acquire(self) -> Host:
        from taureau.functions.instance_main import Process

        loop = asyncio.get_running_loop()
        token, connected = self.new_token()
        done = asyncio.Event()

        def body() -> None:
            try:
                Process(self.channel_path, token, in_thread=True).serve()
            finally:
                loop.call_soon_threadsafe(done.set)

        thread = threading.Thread(target=body, name=f"taureau-instance-{token[-8:]}", daemon=True)
        thread.start()
        link = await asyncio.wait_for(connected, 30.0)
        return ThreadHost(thread, link, done)

    async def close(self) -> None:
        pass
