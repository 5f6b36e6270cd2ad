"""The uniform sketch interface, the query every kind answers a part of, parameter checks.

Every kind wraps an Apache DataSketches object (or, for Bloom, rbloom's filter) and keeps its
binary format: `to_bytes` is what the library serializes, so a sketch moves to Java/C++
DataSketches (Druid, Pinot) unchanged. A kind is a subclass registered under its name
(`registry.py`); the service, the CLI and the REST routes only go through this interface.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from taureau.sketches.errors import SketchFormatError, SketchMergeError, SketchParamError, SketchQueryError

# Every sketch, serialized, must fit one value of a function's durable state (1 MiB) with room
# for the window header around it: parameters whose a priori size passes this are refused.
MAX_SKETCH_BYTES = 1_000_000
MAX_ITEM_BYTES = 1024  # longest item (key) a sketch with items keeps; longer ones are refused
MAX_QUERY_ITEMS = 1000  # quantiles, ranks or top-N asked in one query


@dataclass(slots=True)
class Query:
    """What a caller asks of a sketch; each kind answers the parts in its `queries`."""

    key: str | int | None = None  # count-min, frequent-items: estimate of one item
    top: int | None = None  # frequent-items: heavy hitters
    quantiles: list[float] = field(default_factory=list)  # kll, req, t-digest
    ranks: list[float] = field(default_factory=list)  # kll, req, t-digest: rank of values
    distinct: bool = False  # hll, cpc, theta
    contains: str | int | None = None  # bloom
    sample: int | None = None  # reservoir, var-opt: that many sampled items

    def asked(self) -> set[str]:
        parts = set()
        if self.key is not None:
            parts.add("key")
        if self.top is not None:
            parts.add("top")
        if self.quantiles:
            parts.add("quantiles")
        if self.ranks:
            parts.add("ranks")
        if self.distinct:
            parts.add("distinct")
        if self.contains is not None:
            parts.add("contains")
        if self.sample is not None:
            parts.add("sample")
        return parts

    def check(self) -> None:
        """Bounds that hold for every kind (a query answer is bounded too)."""
        if self.top is not None and not 1 <= self.top <= MAX_QUERY_ITEMS:
            raise SketchQueryError(f"top must be 1..{MAX_QUERY_ITEMS}, not {self.top}")
        if self.sample is not None and not 1 <= self.sample <= MAX_QUERY_ITEMS:
            raise SketchQueryError(f"sample must be 1..{MAX_QUERY_ITEMS}, not {self.sample}")
        for name, values in (("quantiles", self.quantiles), ("ranks", self.ranks)):
            if len(values) > MAX_QUERY_ITEMS:
                raise SketchQueryError(f"at most {MAX_QUERY_ITEMS} {name} in one query")
            if any(not isinstance(v, int | float) or math.isnan(v) for v in values):
                raise SketchQueryError(f"{name} must be numbers")
        if any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            raise SketchQueryError("quantiles are ranks in [0, 1], e.g. 0.5,0.99")


Input = Literal["item", "number"]


class Sketch(ABC):
    """A mergeable summary of a stream. Subclasses set the class attributes below."""

    kind: ClassVar[str]  # registry name, e.g. "count-min"
    input: ClassVar[Input]  # "item": keys (str or int); "number": numeric values
    weighted: ClassVar[bool] = False  # whether update takes a weight other than 1
    queries: ClassVar[frozenset[str]]  # the Query parts this kind answers
    defaults: ClassVar[Mapping[str, Any]]  # parameters and their defaults

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """A new empty sketch; raises SketchParamError for unknown or out-of-bounds params."""
        return cls(**check_params(cls.kind, params, cls.defaults))

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The parameters that rebuild an empty sketch of this configuration."""

    @classmethod
    @abstractmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Read what `to_bytes` (or DataSketches in another language) wrote."""

    @abstractmethod
    def to_bytes(self) -> bytes:
        """DataSketches' own binary format (rbloom's for Bloom)."""

    def copy(self) -> Self:
        return self.from_bytes(self.to_bytes())

    # -- updates ----------------------------------------------------------------------------

    @abstractmethod
    def update(self, item: Any, weight: float = 1) -> None:
        """Add one item (or value)."""

    def update_many(self, items: Any, weights: Any = None) -> None:
        """Add a batch: a list or a numpy array. Kinds override this with a faster path."""
        if weights is None:
            for item in _as_list(items):
                self.update(item)
        else:
            for item, weight in zip(_as_list(items), _as_list(weights), strict=True):
                self.update(item, weight)

    @abstractmethod
    def merge(self, other: Self) -> None:
        """Fold `other` (a partial sketch of the same configuration) into this one, in place."""

    # -- answers ----------------------------------------------------------------------------

    @property
    @abstractmethod
    def n(self) -> float:
        """Items (or total weight) seen."""

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": self.params(), "n": self.n, "bytes": len(self.to_bytes())}

    def answer(self, query: Query) -> dict[str, Any]:
        """A JSON-ready answer to the parts of `query` this kind knows."""
        query.check()
        asked = query.asked()
        if not asked:
            raise SketchQueryError(f"ask {self.kind} for one of: {', '.join(sorted(self.queries))}")
        unknown = asked - self.queries
        if unknown:
            raise SketchQueryError(
                f"a {self.kind} sketch answers {', '.join(sorted(self.queries))}, not {', '.join(sorted(unknown))}"
            )
        result: dict[str, Any] = {"kind": self.kind, "n": self.n}
        result.update(self._answer(query))
        return result

    @abstractmethod
    def _answer(self, query: Query) -> dict[str, Any]: ...

    # -- helpers for subclasses -------------------------------------------------------------

    def _check_mergeable(self, other: Sketch) -> None:
        if type(other) is not type(self):
            raise SketchMergeError(f"cannot merge a {other.kind} sketch into a {self.kind} sketch")
        if self.merge_key() != other.merge_key():
            raise SketchMergeError(
                f"cannot merge {self.kind} sketches of other configurations: {self.merge_key()} vs {other.merge_key()}"
            )

    def merge_key(self) -> tuple[Any, ...]:
        """What two sketches must share to merge (kinds whose library merges any size return ())."""
        return ()

    @classmethod
    def _read(cls, reader: Any, data: bytes, *args: Any) -> Any:
        """Deserialize with the library, turning its errors into SketchFormatError."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise SketchFormatError(f"a {cls.kind} sketch is read from bytes, not {type(data).__name__}")
        try:
            return reader(bytes(data), *args)
        except (ValueError, RuntimeError, IndexError, TypeError, MemoryError) as exc:
            raise SketchFormatError(f"not a {cls.kind} sketch: {exc}") from None


class LibrarySketch(Sketch):
    """A kind that is one DataSketches object (`_sketch`) with the library's own
    serialize/deserialize/merge."""

    library: ClassVar[Any]  # the datasketches class
    _sketch: Any

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        self = cls.__new__(cls)
        self._sketch = cls._read(cls.library.deserialize, data)
        return self

    def to_bytes(self) -> bytes:
        return bytes(self._sketch.serialize())

    def merge(self, other: Self) -> None:
        self._check_mergeable(other)
        self._sketch.merge(other._sketch)


def _as_list(values: Any) -> list[Any]:
    tolist = getattr(values, "tolist", None)
    return tolist() if tolist is not None else list(values)


# -- parameter checking ---------------------------------------------------------------------


def check_params(kind: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults filled in; an unknown name is an error (a typo must not be silently ignored)."""
    if not isinstance(params, Mapping):
        raise SketchParamError(f"{kind} parameters are a mapping, not {type(params).__name__}")
    unknown = set(params) - set(defaults)
    if unknown:
        raise SketchParamError(
            f"{kind} takes {', '.join(sorted(defaults)) or 'no parameters'}; unknown: {', '.join(sorted(unknown))}"
        )
    return {**defaults, **{k: v for k, v in params.items() if v is not None}}


def int_param(kind: str, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SketchParamError(f"{kind} {name} must be an integer, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise SketchParamError(f"{kind} {name} must be an integer, not {value!r}") from None
    if not low <= number <= high:
        raise SketchParamError(f"{kind} {name} must be {low}..{high}, not {number}")
    return number


def float_param(kind: str, name: str, value: Any, low: float, high: float, *, open_low: bool = False,
                open_high: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SketchParamError(f"{kind} {name} must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise SketchParamError(f"{kind} {name} must be a number, not {value!r}") from None
    too_low = number <= low if open_low else number < low
    too_high = number >= high if open_high else number > high
    if math.isnan(number) or too_low or too_high:
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        raise SketchParamError(f"{kind} {name} must be in {lo}{low}, {high}{hi}, not {value!r}")
    return number


def bool_param(kind: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SketchParamError(f"{kind} {name} must be true or false, not {value!r}")


def check_size(kind: str, size: int, hint: str) -> None:
    if size > MAX_SKETCH_BYTES:
        raise SketchParamError(f"a {kind} sketch of these parameters may take {size:,} bytes, over the "
                               f"{MAX_SKETCH_BYTES:,} a sketch may have; {hint}")


def numbers(kind: str, values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SketchQueryError(f"{kind}: {v!r} is not a number")
        out.append(float(v))
    return out
