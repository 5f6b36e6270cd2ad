"""Reservoir sampling: a uniform sample of k items of the stream.

The Python DataSketches binding has no reservoir sketch (Java's ReservoirItemsSketch), and
var-opt with every weight 1 is exactly a uniform reservoir (each item kept with probability
k/n, unions included), so this kind is var-opt with unit weights and var-opt's bytes."""

from __future__ import annotations

from typing import Any

from taureau.sketches.errors import SketchItemError
from taureau.sketches.kinds.var_opt import Sampler
from taureau.sketches.registry import register


@register
class Reservoir(Sampler):
    kind = "reservoir"
    weighted = False

    def _weight(self, weight: Any) -> float:
        if weight != 1:
            raise SketchItemError("reservoir samples are unweighted (use var-opt for weights)")
        return 1.0
