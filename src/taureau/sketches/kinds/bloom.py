"""Bloom filter (rbloom, a Rust filter): membership with no false negatives.

DataSketches' Python binding has no Bloom filter; rbloom is a maintained one with unions and
a byte image. Python's own `hash` is salted per process, so items are hashed with BLAKE2b
(stable everywhere: partials from several processes merge). Bytes: a 24-byte header
(b"TBLM", version, expected items, false-positive rate) then rbloom's image."""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import numpy as np
import rbloom

from taureau.sketches import items
from taureau.sketches.base import Query, Sketch, check_size, float_param, int_param
from taureau.sketches.errors import SketchFormatError
from taureau.sketches.registry import register

KIND = "bloom"
MAGIC, VERSION = b"TBLM", 1
HEADER = struct.Struct("<4sIQd")
_OFFSET = 2**127
_INT = struct.Struct("<q")
_FLOAT = struct.Struct("<d")


def stable_hash(item: Any) -> int:
    """A 128-bit signed hash of an item's canonical bytes, the same in every process."""
    if isinstance(item, str):
        data = b"s" + item.encode()
    elif isinstance(item, int):
        data = b"i" + _INT.pack(item)
    else:
        data = b"f" + _FLOAT.pack(item)
    return int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "little") - _OFFSET


def bits_for(expected_items: int, false_positive_rate: float) -> int:
    return math.ceil(-expected_items * math.log(false_positive_rate) / math.log(2) ** 2)


@register
class Bloom(Sketch):
    kind = KIND
    input = "item"
    queries = frozenset({"contains"})
    defaults: ClassVar[Mapping[str, Any]] = {"expected_items": 100_000, "false_positive_rate": 0.01}

    def __init__(self, expected_items: int = 100_000, false_positive_rate: float = 0.01) -> None:
        expected = int_param(KIND, "expected_items", expected_items, 1, 2**32)
        rate = float_param(KIND, "false_positive_rate", false_positive_rate, 0.0, 0.5, open_low=True)
        check_size(KIND, bits_for(expected, rate) // 8 + HEADER.size + 64,
                   "lower expected_items or raise false_positive_rate")
        self._expected, self._rate = expected, rate
        self._filter = rbloom.Bloom(expected, rate, stable_hash)

    def params(self) -> dict[str, Any]:
        return {"expected_items": self._expected, "false_positive_rate": self._rate}

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) < HEADER.size:
            raise SketchFormatError(f"not a {KIND} filter: too short")
        magic, version, expected, rate = HEADER.unpack_from(bytes(data))
        if magic != MAGIC or version != VERSION:
            raise SketchFormatError(f"not a {KIND} filter (magic {magic!r}, version {version})")
        self = cls.__new__(cls)
        self._expected, self._rate = expected, rate
        try:
            self._filter = rbloom.Bloom.load_bytes(bytes(data)[HEADER.size:], stable_hash)
        except (ValueError, TypeError) as exc:
            raise SketchFormatError(f"not a {KIND} filter: {exc}") from None
        if self._filter.size_in_bits != rbloom.Bloom(expected, rate).size_in_bits:
            raise SketchFormatError(f"{KIND} filter: the image does not match its header")
        return self

    def to_bytes(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self._expected, self._rate) + self._filter.save_bytes()

    @property
    def n(self) -> float:
        """rbloom's estimate of the items added (from the bits set)."""
        return float(self._filter.approx_items)

    def update(self, item: Any, weight: float = 1) -> None:
        self._filter.add(items.key(KIND, item, floats=True))

    def update_many(self, values: Any, weights: Any = None) -> None:
        # Adding an item twice changes nothing: add the distinct ones in one rbloom call.
        if isinstance(values, np.ndarray):
            self._filter.update(items.distinct(KIND, values))
        else:
            self._filter.update([items.key(KIND, v, floats=True) for v in values])

    def merge(self, other: Self) -> None:
        self._check_mergeable(other)
        self._filter = self._filter | other._filter

    def merge_key(self) -> tuple[Any, ...]:
        return (self._expected, self._rate)

    def contains(self, item: Any) -> bool:
        return items.key(KIND, item, floats=True) in self._filter

    def _answer(self, query: Query) -> dict[str, Any]:
        return {"item": query.contains, "mightContain": self.contains(query.contains),
                "falsePositiveRate": self._rate}
