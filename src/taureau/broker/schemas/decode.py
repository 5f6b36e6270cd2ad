"""A stored payload read with the schema it was written with, for people to look at (the
dashboard's peek, `.../examinemessage/decoded`): JSON as JSON, AVRO binary decoded with
fastavro, primitives as Pulsar's clients encode them (big-endian numbers, UTF-8 strings).
Other types (PROTOBUF, KEY_VALUE...) are not decoded: the caller shows the raw bytes."""

from __future__ import annotations

import io
import json
import struct
from collections import OrderedDict
from typing import Any

import fastavro

from taureau.broker.schemas.model import SchemaData

# Pulsar's primitive schemas: struct formats of their fixed-size big-endian encodings.
_FIXED = {"INT8": ">b", "INT16": ">h", "INT32": ">i", "INT64": ">q", "FLOAT": ">f", "DOUBLE": ">d",
          "DATE": ">q", "TIME": ">q", "TIMESTAMP": ">q"}
DECODED_TYPES = frozenset({"JSON", "AVRO", "STRING", "BOOLEAN", *_FIXED})
_PARSED_CACHE = 64  # parsed Avro definitions kept (parsing one costs more than a decode)
_parsed: OrderedDict[bytes, Any] = OrderedDict()


class UndecodableError(ValueError):
    """The payload does not read as its schema says."""


def decodes(schema: SchemaData) -> bool:
    return schema.type in DECODED_TYPES


def decode(schema: SchemaData, payload: bytes) -> Any:
    """The payload as a JSON-able value; UndecodableError if it does not fit the schema."""
    try:
        if schema.type == "JSON":
            return json.loads(payload)
        if schema.type == "AVRO":
            return _avro(schema.data, payload)
        if schema.type == "STRING":
            return payload.decode("utf-8")
        if schema.type == "BOOLEAN":
            if len(payload) != 1:
                raise UndecodableError(f"a BOOLEAN is 1 byte, got {len(payload)}")
            return payload != b"\x00"
        return struct.unpack(_FIXED[schema.type], payload)[0]
    except UndecodableError:
        raise
    except KeyError:
        raise UndecodableError(f"{schema.type} payloads are not decoded") from None
    except (ValueError, struct.error, EOFError, IndexError, TypeError) as exc:
        raise UndecodableError(f"not a {schema.type} payload: {exc}") from None


def _avro(definition: bytes, payload: bytes) -> Any:
    parsed = _parsed.get(definition)
    if parsed is None:
        parsed = fastavro.parse_schema(json.loads(definition))
        _parsed[definition] = parsed
        if len(_parsed) > _PARSED_CACHE:
            _parsed.popitem(last=False)
    else:
        _parsed.move_to_end(definition)
    buffer = io.BytesIO(payload)
    value = fastavro.schemaless_reader(buffer, parsed, None)
    if buffer.tell() != len(payload):  # a record of another schema can read short
        raise UndecodableError(f"{len(payload) - buffer.tell()} bytes left after the AVRO record")
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    """Avro's bytes, fixed, decimals and timestamps in a form JSON can carry."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)  # Decimal, datetime, date, UUID
