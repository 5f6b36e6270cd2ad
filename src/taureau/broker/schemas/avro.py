"""Avro schemas as the registry needs them: parse a definition, and decide whether data written
with one schema can be read with another (the Avro specification's schema resolution rules).

Parsing resolves named types (records, enums, fixed) to one node each, so a recursive record
is a cycle of nodes and the resolution check keeps the pairs it has already assumed readable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Writer type -> reader types it promotes to (besides itself).
PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
MAX_DEPTH = 64  # nesting deeper than this is refused, so a hostile schema cannot exhaust the stack


class AvroSchemaError(ValueError):
    """A definition that is not a valid Avro schema."""


@dataclass(eq=False)
class Node:
    kind: str  # a primitive name, or record / enum / array / map / fixed / union
    name: str = ""  # full name of a named type
    fields: list[tuple[str, Node, bool, tuple[str, ...]]] = field(default_factory=list)  # name, type, has default, aliases
    symbols: tuple[str, ...] = ()
    enum_default: str | None = None
    size: int = 0
    items: Node | None = None  # array items, map values
    branches: list[Node] = field(default_factory=list)

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]


def parse(definition: bytes | str) -> Node:
    try:
        doc = json.loads(definition)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AvroSchemaError(f"the schema is not JSON: {exc}") from None
    return _Parser().node(doc, "", 0)


class _Parser:
    def __init__(self) -> None:
        self.named: dict[str, Node] = {}

    def node(self, doc: Any, namespace: str, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise AvroSchemaError(f"the schema nests deeper than {MAX_DEPTH} levels")
        if isinstance(doc, str):
            return self._reference(doc, namespace)
        if isinstance(doc, list):
            branches = [self.node(branch, namespace, depth + 1) for branch in doc]
            if any(b.kind == "union" for b in branches):
                raise AvroSchemaError("a union may not contain a union")
            return Node("union", branches=branches)
        if not isinstance(doc, dict) or "type" not in doc:
            raise AvroSchemaError(f"not an Avro schema: {json.dumps(doc)[:80]}")
        kind = doc["type"]
        if kind in ("record", "error"):
            return self._record(doc, namespace, depth)
        if kind == "enum":
            symbols = doc.get("symbols")
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise AvroSchemaError("an enum needs a list of string symbols")
            node = self._define(Node("enum", symbols=tuple(symbols)), doc, namespace)
            default = doc.get("default")
            node.enum_default = default if isinstance(default, str) else None
            return node
        if kind == "fixed":
            size = doc.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise AvroSchemaError("a fixed type needs a non-negative integer size")
            return self._define(Node("fixed", size=size), doc, namespace)
        if kind == "array":
            return Node("array", items=self.node(self._need(doc, "items"), namespace, depth + 1))
        if kind == "map":
            return Node("map", items=self.node(self._need(doc, "values"), namespace, depth + 1))
        return self.node(kind, namespace, depth + 1)  # {"type": "int", "logicalType": ...}

    @staticmethod
    def _need(doc: dict, key: str) -> Any:
        if key not in doc:
            raise AvroSchemaError(f"a {doc['type']} needs '{key}'")
        return doc[key]

    def _reference(self, name: str, namespace: str) -> Node:
        if name in PRIMITIVES:
            return Node(name)
        for candidate in (f"{namespace}.{name}" if namespace and "." not in name else name, name):
            if candidate in self.named:
                return self.named[candidate]
        raise AvroSchemaError(f"unknown type {name!r}")

    def _define(self, node: Node, doc: dict, namespace: str) -> Node:
        name = doc.get("name")
        if not isinstance(name, str) or not name:
            raise AvroSchemaError(f"a {doc['type']} needs a name")
        space = doc.get("namespace", namespace) if "." not in name else name.rsplit(".", 1)[0]
        node.name = name if "." in name else (f"{space}.{name}" if space else name)
        if node.name in self.named:
            raise AvroSchemaError(f"type {node.name!r} is defined twice")
        self.named[node.name] = node
        return node

    def _record(self, doc: dict, namespace: str, depth: int) -> Node:
        node = self._define(Node("record"), doc, namespace)
        space = node.name.rsplit(".", 1)[0] if "." in node.name else ""
        declared = doc.get("fields")
        if not isinstance(declared, list):
            raise AvroSchemaError(f"record {node.name!r} needs a list of fields")
        for spec in declared:
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or "type" not in spec:
                raise AvroSchemaError(f"record {node.name!r} has a field without a name or a type")
            aliases = tuple(a for a in spec.get("aliases", ()) if isinstance(a, str))
            node.fields.append((spec["name"], self.node(spec["type"], space, depth + 1), "default" in spec, aliases))
        return node


def can_read(reader: Node, writer: Node) -> str | None:
    """None if data written with `writer` can be read with `reader`; else why not."""
    return _Resolver().check(reader, writer, "")


class _Resolver:
    def __init__(self) -> None:
        self.assumed: set[tuple[int, int]] = set()  # (reader, writer) pairs under check (recursion)

    def check(self, r: Node, w: Node, where: str) -> str | None:
        if w.kind == "union":
            for branch in w.branches:  # every value the writer may have written must be readable
                problem = self.check(r, branch, where)
                if problem:
                    return problem
            return None
        if r.kind == "union":
            if any(self.check(branch, w, where) is None for branch in r.branches):
                return None
            return f"{where or 'the value'}: {_describe(w)} matches no branch of the reader's union"
        if w.kind in PRIMITIVES or r.kind in PRIMITIVES:
            if r.kind == w.kind or r.kind in PROMOTIONS.get(w.kind, ()):
                return None
            return f"{where or 'the value'}: {_describe(w)} cannot be read as {_describe(r)}"
        if r.kind != w.kind:
            return f"{where or 'the value'}: {_describe(w)} cannot be read as {_describe(r)}"
        if r.kind in ("array", "map"):
            assert r.items is not None and w.items is not None
            return self.check(r.items, w.items, f"{where}[]")
        if r.short_name != w.short_name:
            return f"{where or 'the value'}: {_describe(w)} cannot be read as {_describe(r)} (names differ)"
        if r.kind == "fixed":
            return None if r.size == w.size else f"{where or r.name}: fixed size {w.size} read as {r.size}"
        if r.kind == "enum":
            missing = [s for s in w.symbols if s not in r.symbols]
            if missing and r.enum_default is None:
                return f"{where or r.name}: the reader's enum lacks {missing} and has no default"
            return None
        return self._record(r, w, where)

    def _record(self, r: Node, w: Node, where: str) -> str | None:
        pair = (id(r), id(w))
        if pair in self.assumed:
            return None  # a recursive reference: readable if the rest of the check passes
        self.assumed.add(pair)
        written = {name: node for name, node, _, _ in w.fields}
        for name, node, has_default, aliases in r.fields:
            path = f"{where}.{name}" if where else name
            source = next((written[n] for n in (name, *aliases) if n in written), None)
            if source is None:
                if not has_default:
                    return f"field {path!r} is new and has no default"
                continue
            problem = self.check(node, source, path)
            if problem:
                return problem
        return None


def _describe(node: Node) -> str:
    return node.name or node.kind
