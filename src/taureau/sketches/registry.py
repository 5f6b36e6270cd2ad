"""Sketch kinds by name. A kind is one module in `taureau.sketches.kinds` that registers its
class; nothing else in the package switches on kind names."""

from __future__ import annotations

import importlib
import pkgutil

from taureau.sketches.base import Sketch
from taureau.sketches.errors import SketchParamError

_KINDS: dict[str, type[Sketch]] = {}
_loaded = False


def register(cls: type[Sketch]) -> type[Sketch]:
    """Class decorator: make `cls` the sketch of kind `cls.kind`."""
    if cls.kind in _KINDS and _KINDS[cls.kind] is not cls:
        raise RuntimeError(f"sketch kind {cls.kind!r} registered twice")
    _KINDS[cls.kind] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("taureau.sketches.kinds")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    _loaded = True


def kind(name: str) -> type[Sketch]:
    _load()
    cls = _KINDS.get(name)
    if cls is None:
        raise SketchParamError(f"unknown sketch kind {name!r}; kinds: {', '.join(kinds())}")
    return cls


def kinds() -> list[str]:
    _load()
    return sorted(_KINDS)
