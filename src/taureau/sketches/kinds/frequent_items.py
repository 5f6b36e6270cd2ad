"""Frequent items (DataSketches `frequent_strings_sketch`, misra-gries with a purge): heavy
hitters and per-item bounds. Items are strings (an int key is kept as its decimal text), so
the bytes are those of Java's ItemsSketch<String> with ArrayOfStringsSerDe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import datasketches as ds

from taureau.sketches import items
from taureau.sketches.base import MAX_ITEM_BYTES, LibrarySketch, Query, check_size, int_param
from taureau.sketches.errors import SketchItemError, SketchQueryError
from taureau.sketches.registry import register

KIND = "frequent-items"
ERROR_TYPES = {"no-false-positives": ds.frequent_items_error_type.NO_FALSE_POSITIVES,
               "no-false-negatives": ds.frequent_items_error_type.NO_FALSE_NEGATIVES}


def _text(item: Any) -> str:
    k = items.key(KIND, item)
    return k if isinstance(k, str) else str(k)


@register
class FrequentItems(LibrarySketch):
    kind = KIND
    library = ds.frequent_strings_sketch
    input = "item"
    weighted = True
    queries = frozenset({"key", "top"})
    defaults: ClassVar[Mapping[str, Any]] = {"lg_max_k": 10}

    def __init__(self, lg_max_k: int = 10) -> None:
        lg = int_param(KIND, "lg_max_k", lg_max_k, 3, 16)
        # 0.75 * 2^lg items of up to MAX_ITEM_BYTES each, plus their counters.
        check_size(KIND, int(0.75 * 2**lg) * (MAX_ITEM_BYTES + 16) + 64, "lower lg_max_k")
        self._lg = lg
        self._sketch = ds.frequent_strings_sketch(lg)

    def params(self) -> dict[str, Any]:
        return {"lg_max_k": self._lg}

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        self = super().from_bytes(data)
        sketch = self._sketch
        # The map size is not exposed; epsilon = 3.5 / 2^lg (DataSketches' constant) gives it back.
        self._lg = next((lg for lg in range(3, 27)
                         if abs(ds.frequent_strings_sketch.get_epsilon_for_lg_size(lg) - sketch.epsilon) < 1e-12), 10)
        return self

    @property
    def n(self) -> float:
        return float(self._sketch.total_weight)

    def update(self, item: Any, weight: float = 1) -> None:
        self._sketch.update(_text(item), _count(weight))

    def update_many(self, values: Any, weights: Any = None) -> None:
        keys, totals = items.aggregate(KIND, values, weights)
        update = self._sketch.update
        if keys and not isinstance(keys[0], str):  # an int array: one conversion pass
            keys = [str(k) for k in keys]
        for item, weight in zip(keys, totals, strict=True):
            update(item if isinstance(item, str) else str(item), _count(weight))

    def estimate(self, item: Any) -> int:
        return int(self._sketch.get_estimate(_text(item)))

    def bounds(self, item: Any) -> tuple[int, int]:
        text = _text(item)
        return int(self._sketch.get_lower_bound(text)), int(self._sketch.get_upper_bound(text))

    def top(self, n: int = 10, error_type: str = "no-false-positives") -> list[tuple[str, int, int, int]]:
        """Up to n (item, estimate, lower, upper), largest first. `no-false-positives` lists items
        surely above the error threshold; `no-false-negatives` every item that may be."""
        if error_type not in ERROR_TYPES:
            raise SketchQueryError(f"error_type is one of {', '.join(ERROR_TYPES)}")
        rows = self._sketch.get_frequent_items(ERROR_TYPES[error_type])
        return [(item, int(est), int(lo), int(hi)) for item, est, lo, hi in rows[:n]]

    @property
    def maximum_error(self) -> float:
        return float(self._sketch.epsilon * self.n)

    def _answer(self, query: Query) -> dict[str, Any]:
        out: dict[str, Any] = {"maximumError": self.maximum_error}
        if query.key is not None:
            lower, upper = self.bounds(query.key)
            out.update(key=_text(query.key), estimate=self.estimate(query.key), lower=lower, upper=upper)
        if query.top is not None:
            out["top"] = [{"item": i, "estimate": e, "lower": lo, "upper": hi}
                          for i, e, lo, hi in self.top(query.top)]
        return out


def _count(weight: Any) -> int:
    if isinstance(weight, float) and weight.is_integer():
        weight = int(weight)
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
        raise SketchItemError(f"{KIND} weights are non-negative integers, not {weight!r}")
    return weight
