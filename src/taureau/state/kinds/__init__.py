"""The registry of structure kinds: one module per kind, found here by name.

A kind is its memory server block (the operators next to the data), its client handle, the
layout the controller gives its blocks (layouts.py) and its code in dump files. Adding a
kind means one module in this package that calls register(), plus its tests: the
controller, memory server, catalog, dumps, recovery and CLI only ever ask this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from taureau.common import errors

if TYPE_CHECKING:
    from taureau.state.blocks import Block
    from taureau.state.handles import Structure
    from taureau.state.layouts import Layout


@dataclass(frozen=True)
class Kind:
    name: str  # what clients, the catalog and block reports call it
    dump_code: int  # its byte in a dump file's header (persist.py); never reused
    layout: Layout
    block: type[Block]
    handle: type[Structure]
    notify_ops: frozenset[str]  # what a subscription may ask to hear about


_KINDS: dict[str, Kind] = {}
_CODES: dict[int, Kind] = {}


def register(kind: Kind) -> Kind:
    if kind.name in _KINDS or kind.dump_code in _CODES or not 0 < kind.dump_code < 256:
        raise ValueError(f"structure kind {kind.name!r} (dump code {kind.dump_code}) is taken or invalid")
    if kind.block.kind != kind.name or kind.handle.kind != kind.name:
        raise ValueError(f"{kind.name}: its block and handle must name the same kind")
    _KINDS[kind.name] = kind
    _CODES[kind.dump_code] = kind
    return kind


def get(name: object) -> Kind:
    """The kind called `name`; StateProtocolError for anything else."""
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise errors.StateProtocolError(f"unknown structure kind {name!r}")
    return kind


def by_code(code: int) -> Kind:
    kind = _CODES.get(code)
    if kind is None:
        raise errors.BackingStoreError(f"not a known structure kind in a dump: code {code}")
    return kind


def names() -> list[str]:
    return sorted(_KINDS)


def notify_ops() -> frozenset[str]:
    return frozenset().union(*(k.notify_ops for k in _KINDS.values()))


# The built-in kinds register themselves on import (after the names above exist).
from taureau.state.kinds import counter, file, hash_table, queue, sorted_map  # noqa: E402, F401
