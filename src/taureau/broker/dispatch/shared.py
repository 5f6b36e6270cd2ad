"""Shared subscriptions: entries go round-robin to consumers with permits, by priority level."""

from __future__ import annotations

from taureau.broker.dispatch.base import Dispatcher, DispatchItem


class SharedDispatcher(Dispatcher):
    """Round-robin over the consumers of the best (lowest) priority level that has permits."""

    tracks_unacked = True
    delays_delivery = True

    _next = 0  # round-robin cursor into the consumer list

    def _assign(self, items: list[DispatchItem]) -> list[DispatchItem]:
        for index, item in enumerate(items):
            consumer = self._pick()
            if consumer is None:
                return items[index:]
            self._deliver(consumer, item)
        return []

    def _pick(self):
        consumers = self.consumers
        count = len(consumers)
        best = None
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
