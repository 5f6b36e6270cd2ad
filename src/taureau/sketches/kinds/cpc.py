"""CPC (DataSketches `cpc_sketch`): distinct count, about 40% smaller than HLL at equal error."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

import datasketches as ds

from taureau.sketches.base import check_size, int_param
from taureau.sketches.kinds._distinct import DistinctSketch
from taureau.sketches.registry import register

KIND = "cpc"


@register
class CPC(DistinctSketch):
    kind = KIND
    library = ds.cpc_sketch
    # No seed parameter: the Python binding reads sketches of the default seed (9001) only.
    defaults: ClassVar[Mapping[str, Any]] = {"lg_k": 11}

    def __init__(self, lg_k: int = 11) -> None:
        lg = int_param(KIND, "lg_k", lg_k, 4, 26)
        # A CPC image stays under ~0.6 * 2^lg_k bytes; the bound takes a whole byte per bin.
        check_size(KIND, 2**lg + 64, "lower lg_k")
        self._sketch = ds.cpc_sketch(lg)

    def params(self) -> dict[str, Any]:
        return {"lg_k": self._sketch.lg_k}

    def _add(self, item: Any) -> None:
        self._sketch.update(item)

    def merge(self, other: Self) -> None:
        self._check_mergeable(other)
        union = ds.cpc_union(self._sketch.lg_k)
        union.update(self._sketch)
        union.update(other._sketch)
        self._sketch = union.get_result()

    def estimate(self) -> float:
        return float(self._sketch.get_estimate())

    def bounds(self, std_devs: int = 2) -> tuple[float, float]:
        return float(self._sketch.get_lower_bound(std_devs)), float(self._sketch.get_upper_bound(std_devs))
