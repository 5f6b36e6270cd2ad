"""What a runtime gives the worker: hosts (a process or a thread) ready to take an instance.

A host is connected to the worker's channel before it is handed out, so assigning it work is
one message: that is the warm pool, and why a new or woken instance starts in milliseconds.
"""

from __future__ import annotations

import abc
import asyncio
import uuid
from typing import Protocol

from taureau.functions.links import InstanceLink


class Host(Protocol):
    link: InstanceLink
    pid: int | None  # None for a thread

    async def wait(self) -> int | None:
        """Until the host is gone; its exit code (None for a thread)."""

    def kill(self) -> None:
        """Stop it now, whatever it is doing (a thread can only be asked to stop)."""


class Runtime(abc.ABC):
    kind: str

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[InstanceLink]] = {}  # token -> its link, once it connects

    def new_token(self) -> tuple[str, asyncio.Future[InstanceLink]]:
        token = f"{self.kind}-{uuid.uuid4().hex}"
        future: asyncio.Future[InstanceLink] = asyncio.get_running_loop().create_future()
        self._waiting[token] = future
        return token, future

    def claim(self, token: str, link: InstanceLink) -> bool:
        """A host said hello with `token`: if it is one of ours, resolve its wait."""
        future = self._waiting.pop(token, None)
        if future is None or future.done():
            return False
        future.set_result(link)
        return True

    @abc.abstractmethod
    async def acquire(self) -> Host:
        """A connected host that has not been given work yet."""

    @abc.abstractmethod
    async def close(self) -> None: ...
