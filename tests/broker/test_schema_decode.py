"""Payloads read with their schema (broker.schemas.decode): what Pulsar's clients write, and
payloads that do not fit, which are refused with a reason rather than shown wrong."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import pytest

from taureau.broker.schemas.decode import UndecodableError, decode, decodes
from taureau.broker.schemas.model import SchemaData

AVRO = json.dumps({"type": "record", "name": "Order", "fields": [
    {"name": "id", "type": "long"}, {"name": "item", "type": "string"},
    {"name": "tag", "type": ["null", "bytes"], "default": None},
]}).encode()


def _avro(record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(AVRO)), record)
    return out.getvalue()


def test_avro_records_decode_with_bytes_as_hex():
    schema = SchemaData("AVRO", AVRO)
    assert decode(schema, _avro({"id": 7, "item": "widget", "tag": b"\x01\xff"})) == {
        "id": 7, "item": "widget", "tag": "01ff"}
    assert decode(schema, _avro({"id": -1, "item": "", "tag": None})) == {"id": -1, "item": "", "tag": None}


@pytest.mark.parametrize("payload", [b"", b"\x0e", _avro({"id": 7, "item": "w", "tag": None}) + b"extra"])
def test_avro_payloads_that_do_not_fit_are_refused(payload):
    with pytest.raises(UndecodableError, match="AVRO"):
        decode(SchemaData("AVRO", AVRO), payload)


@pytest.mark.parametrize("kind,payload,value", [
    ("JSON", b'{"a": [1, 2]}', {"a": [1, 2]}),
    ("STRING", "naïve".encode(), "naïve"),
    ("BOOLEAN", b"\x01", True),
    ("INT8", struct.pack(">b", -5), -5),
    ("INT16", struct.pack(">h", 300), 300),
    ("INT32", struct.pack(">i", -70000), -70000),
    ("INT64", struct.pack(">q", 2**40), 2**40),
    ("DOUBLE", struct.pack(">d", 2.5), 2.5),
    ("FLOAT", struct.pack(">f", 0.5), 0.5),
    ("TIMESTAMP", struct.pack(">q", 1700000000000), 1700000000000),
])
def test_json_and_primitives_decode_as_pulsars_clients_encode_them(kind, payload, value):
    assert decodes(SchemaData(kind)) and decode(SchemaData(kind), payload) == value


@pytest.mark.parametrize("kind,payload", [
    ("JSON", b"{not json"), ("STRING", b"\xff\xfe"), ("INT32", b"\x00\x01"), ("BOOLEAN", b""),
])
def test_malformed_payloads_are_refused(kind, payload):
    with pytest.raises(UndecodableError, match=kind):
        decode(SchemaData(kind), payload)


def test_other_types_are_not_decoded():
    assert not decodes(SchemaData("PROTOBUF", b"{}"))
    with pytest.raises(UndecodableError, match="not decoded"):
        decode(SchemaData("PROTOBUF", b"{}"), b"\x08\x01")
