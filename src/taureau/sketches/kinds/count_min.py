"""Count-Min (DataSketches `count_min_sketch`): frequency of any key, never under-estimated.

With probability `confidence`, estimate(x) <= true(x) + relative_error * W (W: total weight);
the estimate is never below the true count (non-negative weights).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import datasketches as ds

from taureau.sketches import items
from taureau.sketches.base import LibrarySketch, Query, check_params, check_size, float_param, int_param
from taureau.sketches.errors import SketchItemError
from taureau.sketches.registry import register

KIND = "count-min"
HEADER_BYTES = 64


@register
class CountMin(LibrarySketch):
    kind = KIND
    library = ds.count_min_sketch
    input = "item"
    weighted = True
    queries = frozenset({"key"})
    defaults: ClassVar[Mapping[str, Any]] = {"relative_error": 0.001, "confidence": 0.99, "seed": 9001}

    def __init__(self, relative_error: float = 0.001, confidence: float = 0.99, seed: int = 9001) -> None:
        p = check_params(KIND, {"relative_error": relative_error, "confidence": confidence, "seed": seed},
                         self.defaults)
        error = float_param(KIND, "relative_error", p["relative_error"], 0.0, 1.0, open_low=True)
        conf = float_param(KIND, "confidence", p["confidence"], 0.0, 1.0, open_high=True)
        # DataSketches' suggest_num_buckets/hashes, with a tolerance so that the parameters a
        # sketch reports (e / buckets, 1 - e^-hashes) rebuild the same configuration.
        buckets = max(math.ceil(math.e / error - 1e-9), 3)
        hashes = max(math.ceil(math.log(1.0 / (1.0 - conf)) - 1e-9), 1)
        check_size(KIND, buckets * hashes * 8 + HEADER_BYTES,
                   "raise relative_error or lower confidence")
        self._sketch = ds.count_min_sketch(hashes, buckets, int_param(KIND, "seed", p["seed"], 0, 2**63 - 1))
        self._confidence = conf

    def params(self) -> dict[str, Any]:
        return {"relative_error": self.relative_error, "confidence": self.confidence, "seed": self._sketch.seed}

    @classmethod
    def _wrap(cls, sketch: Any) -> Self:
        self = cls.__new__(cls)
        self._sketch = sketch
        # What the row count guarantees: 1 - e^-hashes (suggest_num_hashes inverted).
        self._confidence = 1.0 - math.exp(-sketch.num_hashes)
        return self

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        return cls._wrap(super().from_bytes(data)._sketch)

    @property
    def relative_error(self) -> float:
        return float(self._sketch.get_relative_error())

    @property
    def confidence(self) -> float:
        return self._confidence

    @property
    def n(self) -> float:
        return float(self._sketch.total_weight)

    def update(self, item: Any, weight: float = 1) -> None:
        if weight < 0:
            raise SketchItemError(f"{KIND} weights are >= 0 (it never under-estimates only then)")
        self._sketch.update(items.key(KIND, item), float(weight))

    def update_many(self, values: Any, weights: Any = None) -> None:
        if weights is None and not items.repeats(values):
            update = self._sketch.update
            for item in items.keys(KIND, values):
                update(item)
            return
        keys, totals = items.aggregate(KIND, values, weights)
        update = self._sketch.update
        for item, weight in zip(keys, totals, strict=True):
            update(item, weight)

    def merge_key(self) -> tuple[Any, ...]:
        return (self._sketch.num_hashes, self._sketch.num_buckets, self._sketch.seed)

    def estimate(self, item: Any) -> float:
        return float(self._sketch.get_estimate(items.key(KIND, item)))

    def bounds(self, item: Any) -> tuple[float, float]:
        """Bounds of the true count: never above the estimate; at least estimate - error * W
        with probability `confidence`. (The library's own get_lower/upper_bound bound the
        estimate instead: [estimate, estimate + error * W].)"""
        estimate = self.estimate(item)
        return max(estimate - self.relative_error * self.n, 0.0), estimate

    def _answer(self, query: Query) -> dict[str, Any]:
        lower, upper = self.bounds(query.key)
        return {"key": query.key, "estimate": self.estimate(query.key), "lower": lower, "upper": upper,
                "confidence": self.confidence, "relativeError": self.relative_error}
