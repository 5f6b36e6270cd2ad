"""Items and batches: what the kinds accept, and the numpy work that amortises a batch.

The libraries hash an int as a 64-bit integer and a str as its UTF-8 bytes, so the same key
must reach them as the same Python type whichever path it takes: numpy integers become `int`,
numpy strings `str`. Batches are aggregated here (duplicates summed) so the per-item Python
call into the library is paid once per distinct key, not once per event.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from taureau.sketches.base import MAX_ITEM_BYTES
from taureau.sketches.errors import SketchItemError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# bincount over the key range when it is at most this many times the batch: O(n), no sort.
BINCOUNT_RANGE_FACTOR = 4


def key(kind: str, item: Any, *, floats: bool = False) -> str | int | float:
    """One item as the library should see it; raises SketchItemError otherwise."""
    if isinstance(item, str):
        if len(item) > MAX_ITEM_BYTES // 4 and len(item.encode()) > MAX_ITEM_BYTES:
            raise SketchItemError(f"{kind}: items are at most {MAX_ITEM_BYTES} bytes")
        return item
    if isinstance(item, bool | np.bool_):
        return int(item)
    if isinstance(item, int | np.integer):
        value = int(item)
        if not INT64_MIN <= value <= INT64_MAX:
            raise SketchItemError(f"{kind}: integer items are 64-bit, {value} is not")
        return value
    if floats and isinstance(item, float | np.floating):
        return float(item)
    raise SketchItemError(f"{kind} takes str or int items{' (or float)' if floats else ''}, not {type(item).__name__}")


def number(kind: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise SketchItemError(f"{kind} takes numbers, not {type(value).__name__}")
    return float(value)


def float_array(kind: str, values: Any, dtype: Any = np.float64) -> np.ndarray:
    """A contiguous numpy array of the dtype the library's batch update takes."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf" or values.ndim != 1:
            raise SketchItemError(f"{kind} takes a 1-d numeric array, not {values.dtype}[{values.ndim}d]")
        return np.ascontiguousarray(values, dtype=dtype)
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError):
        raise SketchItemError(f"{kind} takes numbers") from None
    if array.ndim != 1:
        raise SketchItemError(f"{kind} takes a flat list of numbers")
    return array


def _int_counts(array: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    array = array.astype(np.int64, copy=False)
    low, high = int(array.min()), int(array.max())
    if high - low < BINCOUNT_RANGE_FACTOR * len(array) + 1024:
        counts = np.bincount(array - low, weights=weights)
        present = np.flatnonzero(counts)
        return present + low, counts[present]
    unique, inverse = np.unique(array, return_inverse=True)
    return unique, np.bincount(inverse, weights=weights)


def _weights(kind: str, weights: Any, count: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.dtype.kind not in "iuf" or w.ndim != 1:
        raise SketchItemError(f"{kind}: weights are a flat list of numbers")
    if len(w) != count:
        raise SketchItemError(f"{kind}: {count} items but {len(w)} weights")
    if len(w) and w.min() < 0:
        raise SketchItemError(f"{kind}: weights are >= 0")
    return w


def keys(kind: str, values: Any) -> list[Any]:
    """A batch as library keys: an integer array converts in one pass, anything else per item."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.ndim == 1:
        return values.astype(np.int64, copy=False).tolist()
    return [key(kind, v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]


def texts(kind: str, values: Any) -> list[str]:
    """A batch as strings (items of string-only sketches); a numpy array converts in one pass."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iuUf":
        return values.astype(str).tolist()
    out = []
    for v in values:
        k = v if isinstance(v, str) else key(kind, v, floats=True)
        out.append(k if isinstance(k, str) else str(k))
    return out


def repeats(values: Any, sample: int = 2048) -> bool:
    """Whether a batch repeats keys enough for aggregation to pay (its sort or tally costs
    more than it saves when nearly every key is new): judged on a sample of the batch."""
    if len(values) < 4 * sample:
        return True
    head = values[:sample] if isinstance(values, np.ndarray) else list(values[:sample])
    try:
        return len(set(head.tolist() if isinstance(head, np.ndarray) else head)) < 0.8 * sample
    except TypeError:
        return True  # unhashable items: aggregate() names the error


def aggregate(kind: str, items: Any, weights: Any = None, *, floats: bool = False) -> tuple[list[Any], list[Any]]:
    """(distinct items, their summed weights) of a batch, items converted by `key`; weights
    are checked (numbers >= 0, one per item). Integer weights stay integers (frequent-items
    counts them as such)."""
    if isinstance(items, np.ndarray) and items.dtype.kind in "iub" and items.ndim == 1:
        w = _weights(kind, weights, len(items))
        if len(items) == 0:
            return [], []
        keys, counts = _int_counts(items, None if w is None else w.astype(np.float64))
        if w is None or w.dtype.kind in "iu":
            counts = counts.astype(np.int64)
        return keys.tolist(), counts.tolist()
    values = items.tolist() if isinstance(items, np.ndarray) else list(items)
    w = _weights(kind, weights, len(values))
    if w is None:
        try:
            tally: Counter[Any] = Counter(values)
        except TypeError:
            raise SketchItemError(f"{kind} takes str or int items") from None
        return [key(kind, item, floats=floats) for item in tally], list(tally.values())
    sums: dict[Any, Any] = {}
    try:
        for item, weight in zip(values, w.tolist(), strict=True):
            sums[item] = sums.get(item, 0) + weight
    except TypeError:
        raise SketchItemError(f"{kind} takes str or int items") from None
    return [key(kind, item, floats=floats) for item in sums], list(sums.values())


def distinct(kind: str, items: Any, *, floats: bool = True) -> list[Any]:
    """The distinct items of a batch: enough for a distinct-count sketch (an update is idempotent)."""
    if isinstance(items, np.ndarray) and items.ndim == 1:
        if items.dtype.kind in "iub":
            return np.unique(items.astype(np.int64, copy=False)).tolist()
        if items.dtype.kind == "f":
            return np.unique(items.astype(np.float64, copy=False)).tolist()
        items = items.tolist()
    return [key(kind, item, floats=floats) for item in set(items)]
