"""Shared subscriptions: entries go round-robin to consumers with permits, by priority level."""

from __future__ import annotations

from typing import Any

from taureau.broker.consumer import Consumer
from taureau.broker.dispatch.base import Dispatcher, DispatchItem


class RoundRobin:
    """Round-robin over the consumers of the best (lowest) priority level that are ready;
    shared with the non-persistent Shared dispatcher."""

    def __init__(self) -> None:
        self._next = 0  # round-robin cursor into the consumer list

    def pick(self, consumers: list[Consumer]) -> Consumer | None:
        count = len(consumers)
        best: tuple[int, Consumer] | None = None
        for step in range(count):
            candidate = consumers[(self._next + step) % count]
            if candidate.ready and (best is None or candidate.priority < best[1].priority):
                best = (step, candidate)
                if candidate.priority == 0:
                    break
        if best is None:
            return None
        self._next = (self._next + best[0] + 1) % count
        return best[1]


class SharedDispatcher(Dispatcher):
    """Round-robin over the consumers of the best (lowest) priority level that has permits."""

    tracks_unacked = True
    delays_delivery = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # Dispatcher's: ledger, cursor, entry_info, limits
        self._round_robin = RoundRobin()

    def _assign(self, items: list[DispatchItem]) -> list[DispatchItem]:
        for index, item in enumerate(items):
            consumer = self._round_robin.pick(self.consumers)
            if consumer is None:
                return items[index:]
            self._deliver(consumer, item)
        return []
