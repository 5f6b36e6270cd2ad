"""Sleep until a watched metadata path changes or a timeout passes (the auditor's and the
replication worker's loops: watches make them prompt, the timeout makes them sure)."""

from __future__ import annotations

import asyncio
import contextlib

from taureau.metadata.store import MetadataStore, WatchEvent


class Wakeup:
    def __init__(self, store: MetadataStore, *paths: str) -> None:
        self._event = asyncio.Event()
        self._cancels = [store.watch(path, self._fired) for path in paths]

    def _fired(self, event: WatchEvent, path: str) -> None:
        self._event.set()

    async def wait(self, timeout_s: float) -> None:
        """Return when a watched path changed since the last wait, or after timeout_s."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), max(0.0, timeout_s))
        self._event.clear()

    def close(self) -> None:
        for cancel in self._cancels:
            cancel()
        self._cancels = []
