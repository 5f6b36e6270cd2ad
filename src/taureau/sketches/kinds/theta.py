"""Theta (DataSketches theta sketches): distinct count with set operations between sketches.

A Theta holds an update sketch for new items and, once it has merged or read anything, the
compact sketches it unioned; its value is their union. Intersections and differences give
new (compact) Theta sketches that can be unioned further."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import datasketches as ds

from taureau.sketches.base import check_size, int_param
from taureau.sketches.kinds._distinct import DistinctSketch
from taureau.sketches.registry import register

KIND = "theta"


@register
class Theta(DistinctSketch):
    kind = KIND
    defaults: ClassVar[Mapping[str, Any]] = {"lg_k": 12}

    def __init__(self, lg_k: int = 12) -> None:
        lg = int_param(KIND, "lg_k", lg_k, 5, 26)
        # A compact result keeps at most k hashes of 8 bytes (the update sketch up to 2k).
        check_size(KIND, 2 * 8 * 2**lg + 64, "lower lg_k")
        self._lg = lg
        self._update = ds.update_theta_sketch(lg)
        self._union: Any = None  # a theta_union once something was merged in

    def params(self) -> dict[str, Any]:
        return {"lg_k": self._lg}

    @classmethod
    def _of_compact(cls, compact: Any, lg_k: int) -> Self:
        self = cls(lg_k)
        self._union = ds.theta_union(lg_k)
        self._union.update(compact)
        return self

    @classmethod
    def from_bytes(cls, data: bytes, lg_k: int = 12) -> Self:
        """`lg_k` sizes later unions (a compact image does not record the nominal k)."""
        return cls._of_compact(cls._read(ds.compact_theta_sketch.deserialize, data), lg_k)

    def compact(self) -> Any:
        """The current value as DataSketches' compact_theta_sketch."""
        if self._union is None:
            return self._update.compact()
        self._union.update(self._update)
        self._update = ds.update_theta_sketch(self._lg)  # folded into the union
        return self._union.get_result()

    def to_bytes(self) -> bytes:
        return self.compact().serialize()

    def _add(self, item: Any) -> None:
        self._update.update(item)

    def merge(self, other: Self) -> None:
        self._check_mergeable(other)
        if self._union is None:
            self._union = ds.theta_union(self._lg)
        self._union.update(other.compact())

    def estimate(self) -> float:
        return float(self.compact().get_estimate())

    def bounds(self, std_devs: int = 2) -> tuple[float, float]:
        c = self.compact()
        return float(c.get_lower_bound(std_devs)), float(c.get_upper_bound(std_devs))

    # -- set operations (each returns a new sketch) --------------------------------------------

    def union(self, *others: Theta) -> Theta:
        result = Theta._of_compact(self.compact(), self._lg)
        for other in others:
            result.merge(other)
        return result

    def intersection(self, *others: Theta) -> Theta:
        op = ds.theta_intersection()
        op.update(self.compact())
        for other in others:
            self._check_mergeable(other)
            op.update(other.compact())
        return Theta._of_compact(op.get_result(), self._lg)

    def a_not_b(self, other: Theta) -> Theta:
        """Items of this sketch that are not in `other`."""
        self._check_mergeable(other)
        return Theta._of_compact(ds.theta_a_not_b().compute(self.compact(), other.compact()), self._lg)

    def jaccard(self, other: Theta) -> tuple[float, float, float]:
        """(lower, estimate, upper) of |A ∩ B| / |A ∪ B|."""
        self._check_mergeable(other)
        lower, estimate, upper = ds.theta_jaccard_similarity.jaccard(self.compact(), other.compact())
        return float(lower), float(estimate), float(upper)
