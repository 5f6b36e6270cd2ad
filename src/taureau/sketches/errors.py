"""Errors of `taureau.sketches`: one class per thing a caller can get wrong."""

from __future__ import annotations

from taureau.common.errors import TaureauError


class SketchError(TaureauError):
    """Base of every sketch error."""


class SketchParamError(SketchError, ValueError):
    """A parameter is missing, of the wrong type, or outside its bounds."""


class SketchFormatError(SketchError, ValueError):
    """Bytes that are not a sketch of the expected kind."""


class SketchMergeError(SketchError, ValueError):
    """Two sketches that cannot be merged (other kind, other configuration)."""


class SketchItemError(SketchError, TypeError):
    """An item (or weight) the sketch kind does not take."""


class SketchQueryError(SketchError, ValueError):
    """A query the sketch kind does not answer, or one with bad arguments."""
