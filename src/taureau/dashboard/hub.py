"""A bounded fan-out of periodic samples to server-sent-events clients.

One task samples every `interval` seconds, whether or not anyone listens, so the history (the
last `history` samples' totals, 15 minutes at one a second) is there when a page opens; with
nobody listening it asks the sampler for the totals alone (`detail=False`) and serializes
nothing: with 1,000 topics the rows and their JSON were a quarter of an idle broker's CPU.
Each sample is serialized once and queued to every client. Bounds: at most `max_clients`
streams (the next is refused with `HubFullError`), at most `queue_size` samples waiting per
client; a client whose queue is full is too slow and is dropped (its stream ends, the page
reconnects)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("taureau.dashboard")

# sampler(detail): one sample; without detail only "t" and "totals" are read (no one listens).
Sampler = Callable[[bool], dict[str, Any]]


class HubFullError(Exception):
    """The hub already serves its maximum number of streams."""


@dataclass(frozen=True)
class Event:
    """One server-sent event: serialized once for every client (`text`); `data` kept for
    the clients that see only part of it (a role's view, dashboard.access)."""

    kind: str
    data: Any
    text: str


class Subscriber:
    """One client's queue of events; `None` in it ends the stream."""

    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=queue_size)
        self.dropped = False

    def offer(self, event: Event) -> bool:
        """Queue an event; False (and the stream told to end) when the client is behind."""
        try:
            self.queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self.end()
            return False

    def end(self) -> None:
        self.dropped = True
        while not self.queue.empty():  # room for the end marker: the client gets nothing more
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class LiveHub:
    def __init__(self, sampler: Sampler, interval: float = 1.0, history: int = 900, max_clients: int = 32,
                 queue_size: int = 8, send_timeout: float = 10.0) -> None:
        self._sampler = sampler
        self.interval = interval
        self.send_timeout = send_timeout  # a write to a client must finish within it (stream.py)
        self.max_clients = max_clients
        self.queue_size = queue_size
        self._subscribers: set[Subscriber] = set()
        self._history: deque[dict[str, Any]] = deque(maxlen=history)  # the totals of each sample
        self._task: asyncio.Task | None = None
        self.dropped = 0  # clients dropped for being slow, since start

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for subscriber in list(self._subscribers):
            subscriber.end()
        self._subscribers.clear()

    def subscribe(self) -> Subscriber:
        if len(self._subscribers) >= self.max_clients:
            raise HubFullError(f"the live stream already has {self.max_clients} clients")
        subscriber = Subscriber(self.queue_size)
        # The first event: the history of totals, so a chart starts with the last 15 minutes.
        subscriber.offer(_event("history", list(self._history)))
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # a sampler bug must not end the stream for good
                log.exception("live sample failed")
            await asyncio.sleep(max(self.interval - (time.monotonic() - started), 0.05))

    def tick(self) -> None:
        listened = bool(self._subscribers)
        sample = self._sampler(listened)
        self._history.append({"t": sample["t"], **sample.get("totals", {})})
        if not listened:
            return
        event = _event("sample", sample)
        for subscriber in list(self._subscribers):
            if not subscriber.offer(event):
                self._subscribers.discard(subscriber)
                self.dropped += 1
                log.info("dropped a live stream client that fell %d samples behind", self.queue_size)


def _event(kind: str, data: Any) -> Event:
    return Event(kind, data, serialize(kind, data))


def serialize(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
