"""Namespace bundles: each namespace's topics split into hash ranges, as Pulsar's.

A topic's bundle is found from CRC32 of its full name (UTF-8, the partition's own name for a
partition, so partitions spread), read as an unsigned 32-bit number: the default hash and key
of Pulsar's bundle assignment. The hash space 0x00000000..0xffffffff is cut into N equal
ranges at first; a split then cuts one range in two (Pulsar's range_equally_divide), so a
namespace's ranges are given by its sorted boundaries. A range is [lower, upper) except the
last, which holds 0xffffffff too. Bundles are named as Pulsar names them:
`0x00000000_0x40000000`.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass

from taureau.broker.resources import PreconditionFailedError, ResourceNotFoundError
from taureau.common.errors import NotAllowedError
from taureau.common.names import NamespaceName, TopicName

FULL = 0xFFFFFFFF
DEFAULT_BUNDLES = 4  # Pulsar's defaultNumberOfNamespaceBundles
MAX_BUNDLES = 1024  # a bound on what a namespace record may ask for


@dataclass(frozen=True, slots=True)
class Bundle:
    namespace: NamespaceName
    lower: int
    upper: int

    @property
    def range(self) -> str:
        return f"0x{self.lower:08x}_0x{self.upper:08x}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.range}"

    def holds(self, key: int) -> bool:
        return self.lower <= key < self.upper or (key == FULL and self.upper == FULL)


def topic_hash(name: TopicName) -> int:
    return zlib.crc32(str(name).encode()) & FULL


def boundaries(count: int) -> list[int]:
    """count+1 boundaries of equal ranges: 4 -> 0, 0x40000000, 0x80000000, 0xc0000000, 0xffffffff."""
    if not 1 <= count <= MAX_BUNDLES:
        raise NotAllowedError(f"a namespace has 1 to {MAX_BUNDLES} bundles, not {count}")
    step = (FULL + 1) // count
    return [i * step for i in range(count)] + [FULL]


def bundles_of(ns: NamespaceName, count: int) -> list[Bundle]:
    edges = boundaries(count)
    return [Bundle(ns, lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]


def bundle_for(name: TopicName, count: int) -> Bundle:
    key = topic_hash(name)
    edges = boundaries(count)
    # Equal ranges: the index is the key over the step, clamped for the last (inclusive) one.
    index = min(key // ((FULL + 1) // count), count - 1)
    return Bundle(name.namespace_name, edges[index], edges[index + 1])


def bundle_at(ns: NamespaceName, edges: list[int], name: TopicName) -> Bundle:
    """The bundle of `name` among the ranges cut by `edges` (sorted, 0 first, FULL last)."""
    key = topic_hash(name)
    # The range whose lower edge is the last one <= key; FULL belongs to the last range.
    index = min(bisect.bisect_right(edges, key) - 1, len(edges) - 2)
    return Bundle(ns, edges[index], edges[index + 1])


def ranges_of(ns: NamespaceName, edges: list[int]) -> list[Bundle]:
    return [Bundle(ns, lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]


def check_edges(edges: list[int]) -> list[int]:
    """Boundaries as stored: 0 first, FULL last, strictly increasing, at most MAX_BUNDLES
    ranges; NotAllowedError otherwise."""
    if (len(edges) < 2 or len(edges) - 1 > MAX_BUNDLES or edges[0] != 0 or edges[-1] != FULL
            or any(b <= a for a, b in zip(edges, edges[1:], strict=False))):
        raise NotAllowedError(f"invalid bundle boundaries ({len(edges)} edges)")
    return edges


def split_edges(edges: list[int], bundle: Bundle, limit: int) -> list[int]:
    """`edges` with `bundle` cut in two at its middle, rounded down (range_equally_divide).
    NotAllowedError when `bundle` is not one of the ranges, is too small
    to cut, or the namespace would pass `limit` bundles: ResourceNotFoundError (REST 404)
    for a range that is not a bundle, PreconditionFailedError (412) for the others."""
    try:
        index = edges.index(bundle.lower)
    except ValueError:
        index = -1
    if index < 0 or index + 1 >= len(edges) or edges[index + 1] != bundle.upper:
        raise ResourceNotFoundError(f"{bundle.range} is not a bundle of namespace {bundle.namespace}")
    if len(edges) - 1 >= limit:
        raise PreconditionFailedError(f"namespace {bundle.namespace} has {len(edges) - 1} bundles: "
                              f"at most {limit} (loadBalancerNamespaceMaximumBundles)")
    middle = bundle.lower + (bundle.upper - bundle.lower) // 2
    if middle == bundle.lower:
        raise PreconditionFailedError(f"bundle {bundle.range} is too small to split")
    return [*edges[: index + 1], middle, *edges[index + 1 :]]


def parse_range(ns: NamespaceName, text: str) -> Bundle:
    """`0x00000000_0x40000000` -> the bundle; NotAllowedError for anything else."""
    try:
        lo_text, hi_text = text.split("_")
        lower, upper = int(lo_text, 16), int(hi_text, 16)
    except ValueError:
        raise NotAllowedError(f"invalid bundle range {text!r} (expected 0x00000000_0x40000000)") from None
    if not 0 <= lower < upper <= FULL:
        raise NotAllowedError(f"invalid bundle range {text!r}")
    return Bundle(ns, lower, upper)
