"""Var-opt sampling (DataSketches `var_opt_sketch`): a weighted sample of k items whose
adjusted weights give unbiased subset sums of minimum variance. Items are strings (Java's
ArrayOfStringsSerDe), so the bytes read in Java and C++ DataSketches."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

import datasketches as ds

from taureau.sketches import items
from taureau.sketches.base import MAX_ITEM_BYTES, Query, Sketch, check_size, int_param
from taureau.sketches.errors import SketchItemError
from taureau.sketches.registry import register

KIND = "var-opt"
SERDE = ds.PyStringsSerDe()


def _text(kind: str, item: Any) -> str:
    k = items.key(kind, item, floats=True)
    return k if isinstance(k, str) else str(k)


class Sampler(Sketch):
    """A var-opt sample; the reservoir kind is the same with every weight 1."""

    input = "item"
    queries = frozenset({"sample"})
    defaults: ClassVar[Mapping[str, Any]] = {"k": 64}

    def __init__(self, k: int = 64) -> None:
        k = int_param(self.kind, "k", k, 1, 4096)
        check_size(self.kind, k * (MAX_ITEM_BYTES + 16) + 64, "lower k")
        self._sketch = ds.var_opt_sketch(k)

    def params(self) -> dict[str, Any]:
        return {"k": self._sketch.k}

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        self = cls.__new__(cls)
        self._sketch = cls._read(ds.var_opt_sketch.deserialize, data, SERDE)
        return self

    def to_bytes(self) -> bytes:
        return self._sketch.serialize(SERDE)

    @property
    def n(self) -> float:
        return float(self._sketch.n)

    def _weight(self, weight: Any) -> float:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise SketchItemError(f"{self.kind} weights are positive numbers, not {weight!r}")
        return float(weight)

    def update(self, item: Any, weight: float = 1) -> None:
        self._sketch.update(_text(self.kind, item), self._weight(weight))

    def update_many(self, values: Any, weights: Any = None) -> None:
        # No aggregation: a sample keeps occurrences, not distinct keys.
        update, kind = self._sketch.update, self.kind
        texts = items.texts(kind, values)
        if weights is None:
            for item in texts:
                update(item, 1.0)
            return
        weights = weights.tolist() if hasattr(weights, "tolist") else list(weights)
        if len(weights) != len(texts):
            raise SketchItemError(f"{kind}: {len(texts)} items but {len(weights)} weights")
        checked = [self._weight(w) for w in weights]  # all checked before any update
        for item, weight in zip(texts, checked, strict=True):
            update(item, weight)

    def merge(self, other: Self) -> None:
        self._check_mergeable(other)
        union = ds.var_opt_union(self._sketch.k)
        union.update(self._sketch)
        union.update(other._sketch)
        self._sketch = union.get_result()

    def samples(self) -> list[tuple[str, float]]:
        """(item, adjusted weight) of every sampled item."""
        return [(item, float(weight)) for item, weight in self._sketch]

    def subset_sum(self, predicate: Callable[[str], bool]) -> dict[str, float]:
        """Estimated total weight of the items matching `predicate`, with bounds."""
        return {k: float(v) for k, v in self._sketch.estimate_subset_sum(predicate).items()}

    def _answer(self, query: Query) -> dict[str, Any]:
        rows = self.samples()
        if query.sample is not None and query.sample < len(rows):
            rows = random.sample(rows, query.sample)  # a uniform subset of the sample
        return {"k": self._sketch.k, "sample": [{"item": i, "weight": w} for i, w in rows]}


@register
class VarOpt(Sampler):
    kind = KIND
    weighted = True
