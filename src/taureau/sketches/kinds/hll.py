"""HyperLogLog (DataSketches `hll_sketch`): distinct count in 2^lg_k registers of 4, 6 or 8 bits."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import datasketches as ds

from taureau.sketches.base import check_size, int_param
from taureau.sketches.errors import SketchParamError
from taureau.sketches.kinds._distinct import DistinctSketch
from taureau.sketches.registry import register

KIND = "hll"
TYPES = {4: ds.tgt_hll_type.HLL_4, 6: ds.tgt_hll_type.HLL_6, 8: ds.tgt_hll_type.HLL_8}


@register
class HLL(DistinctSketch):
    kind = KIND
    library = ds.hll_sketch
    defaults: ClassVar[Mapping[str, Any]] = {"lg_k": 12, "hll_type": 8}

    def __init__(self, lg_k: int = 12, hll_type: int = 8) -> None:
        lg = int_param(KIND, "lg_k", lg_k, 4, 21)
        bits = int_param(KIND, "hll_type", hll_type, 4, 8)
        if bits not in TYPES:
            raise SketchParamError(f"{KIND} hll_type is 4, 6 or 8, not {bits}")
        check_size(KIND, ds.hll_sketch.get_max_updatable_serialization_bytes(lg, TYPES[bits]), "lower lg_k")
        self._sketch = ds.hll_sketch(lg, TYPES[bits])

    def params(self) -> dict[str, Any]:
        return {"lg_k": self._sketch.lg_config_k, "hll_type": _bits(self._sketch.tgt_type)}

    def to_bytes(self) -> bytes:
        return self._sketch.serialize_compact()

    def _add(self, item: Any) -> None:
        self._sketch.update(item)

    def merge(self, other: Self) -> None:
        self._check_mergeable(other)
        # A union takes sketches of any lg_k and answers at the smallest; the result keeps ours.
        union = ds.hll_union(self._sketch.lg_config_k)
        union.update(self._sketch)
        union.update(other._sketch)
        self._sketch = union.get_result(self._sketch.tgt_type)

    def estimate(self) -> float:
        return float(self._sketch.get_estimate())

    def bounds(self, std_devs: int = 2) -> tuple[float, float]:
        return float(self._sketch.get_lower_bound(std_devs)), float(self._sketch.get_upper_bound(std_devs))

    def relative_error(self, std_devs: int = 1) -> float:
        """The a priori relative error at `std_devs` (DataSketches' table for this lg_k)."""
        return abs(float(ds.hll_sketch.get_rel_err(True, False, self._sketch.lg_config_k, std_devs)))


def _bits(tgt: Any) -> int:
    return next(bits for bits, t in TYPES.items() if t == tgt)
