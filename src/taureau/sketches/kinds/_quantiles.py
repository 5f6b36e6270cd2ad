"""What the quantile kinds (kll, req, t-digest) share: numeric input, batch arrays, answers."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from taureau.sketches import items
from taureau.sketches.base import LibrarySketch, Query, numbers
from taureau.sketches.errors import SketchItemError


class QuantileSketch(LibrarySketch):
    """A sketch of a numeric distribution. Subclasses hold `_sketch` (the library object) and
    name the numpy dtype its batch update takes."""

    input = "number"
    queries = frozenset({"quantiles", "ranks"})
    dtype: ClassVar[Any] = np.float64

    def update(self, item: Any, weight: float = 1) -> None:
        if weight != 1:
            raise SketchItemError(f"{self.kind} takes unweighted values")
        self._sketch.update(items.number(self.kind, item))

    def update_many(self, values: Any, weights: Any = None) -> None:
        if weights is not None:
            raise SketchItemError(f"{self.kind} takes unweighted values")
        array = items.float_array(self.kind, values, self.dtype)
        if len(array):
            # One call into C++ for the whole batch (the library's numpy overload).
            self._sketch.update(array)

    @property
    def n(self) -> float:
        return float(self._count())

    def _count(self) -> int:
        return int(self._sketch.n)

    def quantile(self, rank: float) -> float:
        return float(self._sketch.get_quantile(rank))

    def quantiles(self, ranks: list[float]) -> list[float]:
        return [self.quantile(r) for r in ranks]

    def rank(self, value: float) -> float:
        return float(self._sketch.get_rank(value))

    def rank_error(self) -> float | None:
        """The normalized rank error (None where the kind gives no a priori bound)."""
        return None

    def quantile_bounds(self, rank: float) -> tuple[float, float] | None:
        error = self.rank_error()
        if error is None:
            return None
        return self.quantile(max(rank - error, 0.0)), self.quantile(min(rank + error, 1.0))

    def _answer(self, query: Query) -> dict[str, Any]:
        out: dict[str, Any] = {"rankError": self.rank_error()}
        if self._count() == 0:
            out["empty"] = True
            return out
        out["min"], out["max"] = float(self._sketch.get_min_value()), float(self._sketch.get_max_value())
        if query.quantiles:
            out["quantiles"] = [{"rank": r, "value": self.quantile(r), "bounds": self.quantile_bounds(r)}
                                for r in query.quantiles]
        if query.ranks:
            out["ranks"] = [{"value": v, "rank": self.rank(v)} for v in numbers(self.kind, query.ranks)]
        return out
