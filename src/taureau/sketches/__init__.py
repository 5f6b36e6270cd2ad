"""Mergeable streaming sketches over Apache DataSketches, with one interface for every kind.

>>> from taureau.sketches import CountMin, KLL
>>> cms = CountMin(relative_error=0.001, confidence=0.99)
>>> cms.update("alice"); cms.update_many(["bob", "alice"])
>>> cms.estimate("alice"), cms.bounds("alice")
>>> CountMin.from_bytes(cms.to_bytes())        # DataSketches' own binary format

Kinds by name: `registry.kind("count-min")`; `registry.kinds()` lists them.
"""

from taureau.sketches.base import Query, Sketch
from taureau.sketches.errors import (
    SketchError,
    SketchFormatError,
    SketchItemError,
    SketchMergeError,
    SketchParamError,
    SketchQueryError,
)
from taureau.sketches.kinds.bloom import Bloom
from taureau.sketches.kinds.count_min import CountMin
from taureau.sketches.kinds.cpc import CPC
from taureau.sketches.kinds.frequent_items import FrequentItems
from taureau.sketches.kinds.hll import HLL
from taureau.sketches.kinds.kll import KLL
from taureau.sketches.kinds.req import REQ
from taureau.sketches.kinds.reservoir import Reservoir
from taureau.sketches.kinds.tdigest import TDigest
from taureau.sketches.kinds.theta import Theta
from taureau.sketches.kinds.var_opt import VarOpt
from taureau.sketches.registry import kind, kinds

__all__ = [
    "CPC", "HLL", "KLL", "REQ", "Bloom", "CountMin", "FrequentItems", "Query", "Reservoir", "Sketch",
    "SketchError", "SketchFormatError", "SketchItemError", "SketchMergeError", "SketchParamError",
    "SketchQueryError", "TDigest", "Theta", "VarOpt", "kind", "kinds",
]
