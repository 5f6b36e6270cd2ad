"""Compatibility strategies: may a new schema join a topic's history, may a consumer read it.

BACKWARD: the new schema reads data written with the latest one. FORWARD: the latest reads data
written with the new one. FULL: both. The _TRANSITIVE forms check every version since the last
delete instead of the latest only. UNDEFINED (no policy set) means FULL, Pulsar's broker default.

AVRO and JSON definitions are checked with Avro's resolution rules (a JSON schema that is not an
Avro record is only compatible with itself); KEY_VALUE checks its key and its value apart;
PROTOBUF and PROTOBUF_NATIVE accept any definition of the same type (their data is not checked,
which is looser than Pulsar's check of the root message name); every other type has no
definition, so two schemas of the same type are the same schema. A change of type is refused
by every strategy but ALWAYS_COMPATIBLE.
"""

from __future__ import annotations

import json
import struct
from enum import Enum

from taureau.broker.schemas import avro
from taureau.broker.schemas.model import (
    MAX_SCHEMA_BYTES,
    TYPE_NUMBERS,
    IncompatibleSchemaError,
    InvalidSchemaError,
    SchemaData,
)


class Strategy(Enum):
    UNDEFINED = "UNDEFINED"
    ALWAYS_INCOMPATIBLE = "ALWAYS_INCOMPATIBLE"
    ALWAYS_COMPATIBLE = "ALWAYS_COMPATIBLE"
    BACKWARD = "BACKWARD"
    FORWARD = "FORWARD"
    FULL = "FULL"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @classmethod
    def parse(cls, value: object) -> Strategy:
        try:
            return cls(str(value).upper())
        except ValueError:
            raise ValueError(f"unknown schema compatibility strategy {value!r}; one of "
                             f"{', '.join(s.value for s in cls)}") from None

    @property
    def effective(self) -> Strategy:
        return Strategy.FULL if self is Strategy.UNDEFINED else self

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")


_BACKWARD = {Strategy.BACKWARD, Strategy.BACKWARD_TRANSITIVE, Strategy.FULL, Strategy.FULL_TRANSITIVE}
_FORWARD = {Strategy.FORWARD, Strategy.FORWARD_TRANSITIVE, Strategy.FULL, Strategy.FULL_TRANSITIVE}


def validate(schema: SchemaData) -> None:
    """Refuse a definition no reader could use (InvalidSchemaError)."""
    if schema.type == "BYTES":  # a KEY_VALUE side may be raw bytes
        return
    if schema.type not in TYPE_NUMBERS:
        raise InvalidSchemaError(f"unknown schema type {schema.type!r}")
    if len(schema.data) > MAX_SCHEMA_BYTES:
        raise InvalidSchemaError(f"the schema definition is {len(schema.data)} bytes, more than {MAX_SCHEMA_BYTES}")
    if schema.type == "AVRO":
        _avro(schema.data)
    elif schema.type == "JSON":
        try:
            json.loads(schema.data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidSchemaError(f"the JSON schema is not JSON: {exc}") from None
    elif schema.type == "KEY_VALUE":
        for side in split_key_value(schema):
            validate(side)


def check(new: SchemaData, history: list[SchemaData], strategy: Strategy) -> None:
    """May `new` follow `history` (oldest first, since the last delete)? IncompatibleSchemaError if not."""
    strategy = strategy.effective
    if not history or strategy is Strategy.ALWAYS_COMPATIBLE:
        return
    if strategy is Strategy.ALWAYS_INCOMPATIBLE:
        raise IncompatibleSchemaError("the topic's strategy is ALWAYS_INCOMPATIBLE: its schema cannot change")
    for old in history if strategy.transitive else history[-1:]:
        _pair(new, old, backward=strategy in _BACKWARD, forward=strategy in _FORWARD)


def check_reader(reader: SchemaData, history: list[SchemaData], strategy: Strategy) -> None:
    """May a consumer with schema `reader` read the topic? As Pulsar: the latest version under
    the non-transitive strategies, every version under the transitive ones."""
    strategy = strategy.effective
    if strategy is Strategy.ALWAYS_COMPATIBLE:
        return
    if strategy is Strategy.ALWAYS_INCOMPATIBLE:
        raise IncompatibleSchemaError("the topic's strategy is ALWAYS_INCOMPATIBLE: only its own schema reads it")
    for old in history if strategy.transitive else history[-1:]:
        _pair(reader, old, backward=True, forward=strategy is Strategy.FULL_TRANSITIVE)


def _pair(new: SchemaData, old: SchemaData, *, backward: bool, forward: bool) -> None:
    if new.type != old.type:
        raise IncompatibleSchemaError(f"the topic's schema is {old.type}, not {new.type}")
    if new.type == "KEY_VALUE":
        for new_side, old_side in zip(split_key_value(new), split_key_value(old), strict=True):
            _pair(new_side, old_side, backward=backward, forward=forward)
        return
    if new.type not in ("AVRO", "JSON") or new.data == old.data:
        return
    try:
        new_node, old_node = avro.parse(new.data), avro.parse(old.data)
    except avro.AvroSchemaError:
        raise IncompatibleSchemaError("a JSON schema that is not an Avro record fits only itself") from None
    if backward and (problem := avro.can_read(new_node, old_node)):
        raise IncompatibleSchemaError(f"the new schema cannot read data written with the old one: {problem}")
    if forward and (problem := avro.can_read(old_node, new_node)):
        raise IncompatibleSchemaError(f"the old schema cannot read data written with the new one: {problem}")


def _avro(data: bytes) -> avro.Node:
    try:
        return avro.parse(data)
    except avro.AvroSchemaError as exc:
        raise InvalidSchemaError(f"invalid Avro schema: {exc}") from None


def split_key_value(schema: SchemaData) -> tuple[SchemaData, SchemaData]:
    """The key and value schemas of a KEY_VALUE schema: its definition is the key's, then the
    value's, each after a 4-byte big-endian length (-1: empty); their types are properties."""
    data, parts = schema.data, []
    offset = 0
    for side in ("key", "value"):
        if offset + 4 > len(data):
            raise InvalidSchemaError("a KEY_VALUE schema needs a key and a value definition")
        (length,) = struct.unpack_from(">i", data, offset)
        offset += 4
        length = max(length, 0)
        if offset + length > len(data):
            raise InvalidSchemaError(f"the {side} definition of the KEY_VALUE schema is truncated")
        kind = schema.properties.get(f"{side}.schema.type", "BYTES" if length == 0 else "AVRO").upper()
        if kind not in TYPE_NUMBERS and kind != "BYTES":
            raise InvalidSchemaError(f"unknown {side} schema type {kind!r}")
        parts.append(SchemaData(kind, data[offset : offset + length]))
        offset += length
    if any(p.type == "KEY_VALUE" for p in parts):
        raise InvalidSchemaError("a KEY_VALUE schema cannot nest another KEY_VALUE")
    return parts[0], parts[1]
