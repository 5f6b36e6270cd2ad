"""REQ (DataSketches `req_floats_sketch`): relative-error quantiles, most accurate at the high
ranks (hra, the default) or the low ones. The Python binding has floats only: values are kept
as 32-bit floats."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import datasketches as ds
import numpy as np

from taureau.sketches.base import bool_param, check_size, int_param
from taureau.sketches.kinds._quantiles import QuantileSketch
from taureau.sketches.registry import register

KIND = "req"


@register
class REQ(QuantileSketch):
    kind = KIND
    library = ds.req_floats_sketch
    dtype = np.float32
    defaults: ClassVar[Mapping[str, Any]] = {"k": 12, "high_rank_accuracy": True}

    def __init__(self, k: int = 12, high_rank_accuracy: bool = True) -> None:
        k = int_param(KIND, "k", k, 4, 1024)
        # Compactors of 2k items (4 bytes) per level; a stream of 2^64 items has < 64 levels.
        check_size(KIND, 64 * 2 * k * 4 * 2 + 64, "lower k")
        self._sketch = ds.req_floats_sketch(k, bool_param(KIND, "high_rank_accuracy", high_rank_accuracy))

    def params(self) -> dict[str, Any]:
        return {"k": self._sketch.k, "high_rank_accuracy": self._sketch.is_hra()}

    def merge_key(self) -> tuple[Any, ...]:
        return (self._sketch.is_hra(),)

    def quantile_bounds(self, rank: float) -> tuple[float, float] | None:
        # REQ's error is relative to the rank (to 1 - rank in hra): 2 standard deviations.
        lo = self._sketch.get_rank_lower_bound(rank, 2)
        hi = self._sketch.get_rank_upper_bound(rank, 2)
        return self.quantile(max(lo, 0.0)), self.quantile(min(hi, 1.0))
