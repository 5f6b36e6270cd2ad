"""The schema registry's rules, table-tested: Avro resolution, strategies, KEY_VALUE, versions."""

from __future__ import annotations

import asyncio
import json
import struct

import pytest

from taureau.broker.schemas import avro, compatibility
from taureau.broker.schemas.compatibility import Strategy
from taureau.broker.schemas.model import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    SchemaData,
    SchemaNotFoundError,
)
from taureau.broker.schemas.registry import SchemaRegistry
from taureau.metadata.embedded import EmbeddedMetadataStore

pytestmark = pytest.mark.anyio


def record(*fields: dict, name: str = "R") -> dict:
    return {"type": "record", "name": name, "fields": list(fields)}


def f(name: str, kind, **extra) -> dict:
    return {"name": name, "type": kind, **extra}


def readable(reader: dict | str | list, writer: dict | str | list) -> bool:
    return avro.can_read(avro.parse(json.dumps(reader)), avro.parse(json.dumps(writer))) is None


@pytest.mark.parametrize(
    "reader, writer, ok",
    [
        ("long", "int", True),  # promotion
        ("int", "long", False),
        ("double", "float", True),
        ("bytes", "string", True),
        ("string", "boolean", False),
        (["null", "int"], "int", True),  # a reader union takes any matching branch
        ("int", ["null", "int"], False),  # the writer may have written null
        (["null", "long"], ["null", "int"], True),
        ({"type": "array", "items": "long"}, {"type": "array", "items": "int"}, True),
        ({"type": "map", "values": "int"}, {"type": "map", "values": "string"}, False),
        ({"type": "fixed", "name": "F", "size": 4}, {"type": "fixed", "name": "F", "size": 8}, False),
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, {"type": "enum", "name": "E", "symbols": ["A"]}, True),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, {"type": "enum", "name": "E", "symbols": ["A", "B"]}, False),
        ({"type": "enum", "name": "E", "symbols": ["A"], "default": "A"},
         {"type": "enum", "name": "E", "symbols": ["A", "B"]}, True),
        (record(f("a", "int"), f("b", "string", default="x")), record(f("a", "int")), True),
        (record(f("a", "int"), f("b", "string")), record(f("a", "int")), False),  # new field, no default
        (record(f("a", "int")), record(f("a", "int"), f("gone", "string")), True),  # dropped field ignored
        (record(f("renamed", "int", aliases=["a"])), record(f("a", "int")), True),
        (record(f("a", "int"), name="R"), record(f("a", "int"), name="Other"), False),
        (record(f("a", "int"), name="ns.R"), record(f("a", "int"), name="other.R"), True),  # unqualified names
    ],
)
def test_avro_resolution(reader, writer, ok):
    assert readable(reader, writer) is ok


def test_a_recursive_record_resolves_without_looping():
    node = record(f("value", "int"), f("next", ["null", "Node"], default=None), name="Node")
    newer = record(f("value", "long"), f("next", ["null", "Node"], default=None), name="Node")
    assert readable(newer, node)
    assert not readable(node, newer)


@pytest.mark.parametrize(
    "definition, problem",
    [
        ("{not json", "not JSON"),
        (json.dumps({"type": "record", "name": "R"}), "list of fields"),
        (json.dumps(record(f("a", "Missing"))), "unknown type"),
        (json.dumps([record(f("a", "int")), record(f("b", "int"))]), "defined twice"),
        (json.dumps({"type": "fixed", "name": "F", "size": -1}), "size"),
        (json.dumps(["int", ["null"]]), "union"),
        ("[" * 100 + '"int"' + "]" * 100, "deeper"),
    ],
)
def test_invalid_avro_is_refused_with_the_reason(definition, problem):
    with pytest.raises(InvalidSchemaError, match=problem):
        compatibility.validate(SchemaData("AVRO", definition.encode()))


def avro_schema(*fields: dict) -> SchemaData:
    return SchemaData("AVRO", json.dumps(record(*fields)).encode())


V1 = avro_schema(f("a", "int"))
V2 = avro_schema(f("a", "int"), f("b", "string", default=""))  # both ways compatible with V1
V3_BACKWARD_ONLY = avro_schema(f("a", "long"), f("b", "string", default=""))  # reads int; V1 cannot read long
V4_NEEDS_B = avro_schema(f("a", "int"), f("b", "string"))  # reads nothing written before


@pytest.mark.parametrize(
    "strategy, history, new, ok",
    [
        (Strategy.FULL, [V1], V2, True),
        (Strategy.UNDEFINED, [V1], V3_BACKWARD_ONLY, False),  # UNDEFINED is FULL
        (Strategy.BACKWARD, [V1], V3_BACKWARD_ONLY, True),
        (Strategy.FORWARD, [V1], V3_BACKWARD_ONLY, False),
        (Strategy.FORWARD, [V1], V4_NEEDS_B, True),  # V1 ignores b
        (Strategy.BACKWARD, [V1], V4_NEEDS_B, False),
        (Strategy.BACKWARD, [V4_NEEDS_B, V2], V1, True),  # the latest only
        (Strategy.FORWARD, [V4_NEEDS_B, V2], V1, True),  # V2, the latest, reads V1's data
        (Strategy.FORWARD_TRANSITIVE, [V4_NEEDS_B, V2], V1, False),  # V4 cannot: b has no default
        (Strategy.ALWAYS_COMPATIBLE, [SchemaData("STRING")], V1, True),
        (Strategy.ALWAYS_INCOMPATIBLE, [V1], V2, False),
        (Strategy.FULL, [SchemaData("STRING")], SchemaData("JSON", b"{}"), False),  # a type change
        (Strategy.FULL, [SchemaData("PROTOBUF", b"a")], SchemaData("PROTOBUF", b"b"), True),
        (Strategy.FULL, [SchemaData("JSON", b'{"x": 1}')], SchemaData("JSON", b'{"x": 2}'), False),
    ],
)
def test_strategies(strategy, history, new, ok):
    if ok:
        compatibility.check(new, history, strategy)
    else:
        with pytest.raises(IncompatibleSchemaError):
            compatibility.check(new, history, strategy)


def key_value(key: SchemaData, value: SchemaData) -> SchemaData:
    data = b"".join(struct.pack(">i", len(s.data)) + s.data for s in (key, value))
    return SchemaData("KEY_VALUE", data, {"key.schema.type": key.type, "value.schema.type": value.type})


def test_key_value_checks_each_side():
    old = key_value(SchemaData("STRING"), V1)
    compatibility.check(key_value(SchemaData("STRING"), V2), [old], Strategy.FULL)
    with pytest.raises(IncompatibleSchemaError, match="STRING"):
        compatibility.check(key_value(SchemaData("INT64"), V1), [old], Strategy.FULL)
    with pytest.raises(InvalidSchemaError, match="truncated"):
        compatibility.validate(SchemaData("KEY_VALUE", struct.pack(">i", 100) + b"x"))


async def test_versions_are_found_added_deleted_and_started_afresh():
    registry = SchemaRegistry(EmbeddedMetadataStore(None))
    assert await registry.add("t/n/x", V1, Strategy.FULL) == 0
    assert await registry.add("t/n/x", V1, Strategy.FULL) == 0  # identical: found, not added
    assert await registry.add("t/n/x", V2, Strategy.FULL) == 1
    with pytest.raises(IncompatibleSchemaError):
        await registry.add("t/n/x", V3_BACKWARD_ONLY, Strategy.FULL)  # V2 cannot read a long
    with pytest.raises(IncompatibleSchemaError, match="automatic"):
        await registry.add("t/n/x", V4_NEEDS_B, Strategy.ALWAYS_COMPATIBLE, allow_update=False)
    assert (await registry.get("t/n/x", 0)).schema == V1
    assert await registry.delete("t/n/x") == 2
    with pytest.raises(SchemaNotFoundError):
        await registry.latest("t/n/x")
    with pytest.raises(SchemaNotFoundError):
        await registry.get("t/n/x", 2)  # the tombstone is not a schema
    assert await registry.add("t/n/x", V3_BACKWARD_ONLY, Strategy.FULL) == 3  # a new history
    assert [s.version for s in await registry.live("t/n/x")] == [3]
    await registry.drop("t/n/x")
    assert await registry.history("t/n/x") == []


async def test_concurrent_registrations_agree_on_one_version_each():
    registry = SchemaRegistry(EmbeddedMetadataStore(None))
    versions = await asyncio.gather(*(registry.add("t/n/y", V1, Strategy.FULL) for _ in range(8)))
    assert set(versions) == {0}
    assert len(await registry.history("t/n/y")) == 1


async def test_versions_are_bounded(monkeypatch):
    monkeypatch.setattr("taureau.broker.schemas.registry.MAX_VERSIONS", 2)
    registry = SchemaRegistry(EmbeddedMetadataStore(None))
    await registry.add("t/n/z", SchemaData("STRING"), Strategy.ALWAYS_COMPATIBLE)
    await registry.add("t/n/z", SchemaData("INT32"), Strategy.ALWAYS_COMPATIBLE)
    with pytest.raises(IncompatibleSchemaError, match="2 schema versions"):
        await registry.add("t/n/z", SchemaData("INT64"), Strategy.ALWAYS_COMPATIBLE)


async def test_a_reader_needs_a_schema_to_check_against():
    registry = SchemaRegistry(EmbeddedMetadataStore(None))
    with pytest.raises(IncompatibleSchemaError, match="does not have a schema"):
        await registry.check_reader("t/n/r", V1, Strategy.FULL)
    await registry.add("t/n/r", V1, Strategy.FULL)
    await registry.check_reader("t/n/r", V3_BACKWARD_ONLY, Strategy.FULL)  # reads V1's data
    with pytest.raises(IncompatibleSchemaError):
        await registry.check_reader("t/n/r", V4_NEEDS_B, Strategy.FULL)
