"""What the distinct-count kinds (hll, cpc, theta) share: items, batches, the answer."""

from __future__ import annotations

from typing import Any

from taureau.sketches import items
from taureau.sketches.base import LibrarySketch, Query


class DistinctSketch(LibrarySketch):
    """A distinct-count sketch: updating with an item twice changes nothing, so a batch is
    reduced to its distinct items (numpy's unique for arrays) before the library sees it."""

    input = "item"
    queries = frozenset({"distinct"})

    def _add(self, item: Any) -> None:
        raise NotImplementedError

    def update(self, item: Any, weight: float = 1) -> None:
        self._add(items.key(self.kind, item, floats=True))

    def update_many(self, values: Any, weights: Any = None) -> None:
        add = self._add
        for item in items.distinct(self.kind, values):
            add(item)

    def estimate(self) -> float:
        raise NotImplementedError

    def bounds(self, std_devs: int = 2) -> tuple[float, float]:
        raise NotImplementedError

    @property
    def n(self) -> float:
        return self.estimate()

    def _answer(self, query: Query) -> dict[str, Any]:
        bounds = {f"{k}sigma": list(self.bounds(k)) for k in (1, 2, 3)}
        return {"distinct": self.estimate(), "bounds": bounds}
