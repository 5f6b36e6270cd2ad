"""t-digest (DataSketches `tdigest_double`): quantiles, most accurate in the tails; no a
priori rank-error bound, so answers carry none."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import datasketches as ds

from taureau.sketches.base import check_size, int_param
from taureau.sketches.kinds._quantiles import QuantileSketch
from taureau.sketches.registry import register

KIND = "t-digest"


@register
class TDigest(QuantileSketch):
    kind = KIND
    library = ds.tdigest_double
    defaults: ClassVar[Mapping[str, Any]] = {"k": 200}

    def __init__(self, k: int = 200) -> None:
        k = int_param(KIND, "k", k, 10, 10_000)
        # At most ~2k centroids of (mean, weight) once compressed; the buffer is not serialized.
        check_size(KIND, 2 * k * 16 + 64, "lower k")
        self._sketch = ds.tdigest_double(k)

    def params(self) -> dict[str, Any]:
        return {"k": self._sketch.k}

    def to_bytes(self) -> bytes:
        self._sketch.compress()  # the image is then the centroids alone, bounded by k
        return bytes(self._sketch.serialize())

    def _count(self) -> int:
        return int(self._sketch.get_total_weight())

    def quantile(self, rank: float) -> float:
        return float(self._sketch.get_quantile(rank))

    def rank(self, value: float) -> float:
        return float(self._sketch.get_rank(value))
