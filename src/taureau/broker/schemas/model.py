"""What a schema is, how a version is written on the wire, and how one is stored.

A schema belongs to a topic's base name (`tenant/namespace/topic`): the partitions of a
partitioned topic and both domains share it, as in Pulsar. Versions count from 0; on the wire
a version is an 8-byte big-endian long. A deleted schema is a version too (a tombstone): the
next schema registered after it starts a new history and gets the next number.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from taureau.common.errors import BrokerError
from taureau.common.names import TopicName

MAX_SCHEMA_BYTES = 512 * 1024  # a schema definition larger than this is refused
MAX_VERSIONS = 1000  # versions kept per topic; registering more is refused

# Pulsar's Schema.Type numbers and names (the wire enum and the REST "type" field).
TYPE_NAMES = {
    0: "NONE", 1: "STRING", 2: "JSON", 3: "PROTOBUF", 4: "AVRO", 5: "BOOLEAN", 6: "INT8",
    7: "INT16", 8: "INT32", 9: "INT64", 10: "FLOAT", 11: "DOUBLE", 12: "DATE", 13: "TIME",
    14: "TIMESTAMP", 15: "KEY_VALUE", 16: "INSTANT", 17: "LOCAL_DATE", 18: "LOCAL_TIME",
    19: "LOCAL_DATE_TIME", 20: "PROTOBUF_NATIVE", 21: "AUTO_CONSUME", 22: "EXTERNAL",
}
TYPE_NUMBERS = {name: number for number, name in TYPE_NAMES.items()}
# Types whose definition is structured; every other stored type has an empty definition.
STRUCT_TYPES = frozenset({"JSON", "AVRO", "PROTOBUF", "PROTOBUF_NATIVE", "KEY_VALUE"})
# Types a client may name in a request but that are never stored (not a schema of the data).
NOT_STORED = frozenset({"NONE", "BYTES", "AUTO_CONSUME", "AUTO_PUBLISH", "AUTO"})


class IncompatibleSchemaError(BrokerError):
    """A schema that does not fit the topic's (Pulsar's IncompatibleSchema)."""


class InvalidSchemaError(IncompatibleSchemaError):
    """A schema definition that cannot be read (not JSON, not an Avro record, too large)."""


class SchemaNotFoundError(BrokerError):
    """No schema (or no such version) for the topic."""


@dataclass(frozen=True, slots=True)
class SchemaData:
    type: str  # a TYPE_NAMES value
    data: bytes = b""
    properties: dict[str, str] = field(default_factory=dict)

    def same_definition(self, other: SchemaData) -> bool:
        """Pulsar's schema hash compares the type and the definition, not the properties."""
        return self.type == other.type and self.data == other.data


@dataclass(frozen=True, slots=True)
class StoredSchema:
    version: int
    schema: SchemaData | None  # None: a tombstone left by a delete
    timestamp_ms: int

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"version": self.version, "timestamp": self.timestamp_ms}
        if self.schema is not None:
            body.update(type=self.schema.type, data=base64.b64encode(self.schema.data).decode(),
                        properties=self.schema.properties)
        else:
            body["deleted"] = True
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StoredSchema:
        body = json.loads(raw)
        schema = None
        if not body.get("deleted"):
            schema = SchemaData(body["type"], base64.b64decode(body["data"]), dict(body.get("properties", {})))
        return cls(int(body["version"]), schema, int(body["timestamp"]))


def schema_id(topic: TopicName) -> str:
    """The registry key of a topic: its base name without domain or partition."""
    return f"{topic.tenant}/{topic.namespace}/{topic.local_name}"


def encode_version(version: int) -> bytes:
    return struct.pack(">q", version)


def decode_version(raw: bytes) -> int:
    if len(raw) != 8:
        raise SchemaNotFoundError(f"a schema version is 8 bytes, got {len(raw)}")
    return int(struct.unpack(">q", raw)[0])
