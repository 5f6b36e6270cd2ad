"""The JSON answer of `.../examinemessage/decoded`: a stored message with its payload read by
the schema version it was written with (the version its producer's metadata names)."""

from __future__ import annotations

import base64
from typing import Any

from taureau.broker.admin.headers import json_text
from taureau.broker.schemas.decode import UndecodableError, decode, decodes
from taureau.broker.schemas.model import SchemaNotFoundError, decode_version, schema_id
from taureau.broker.schemas.registry import SchemaRegistry
from taureau.common.names import TopicName
from taureau.protocol import parse_metadata


async def decoded_message(registry: SchemaRegistry, topic: TopicName, entry, messages: list) -> dict[str, Any]:
    """The entry's first message: id, publish time, key, properties, batch size, the raw
    payload (base64), and with a known schema its version and type, and the decoded `value`
    or why it did not decode (`decodeError`)."""
    meta, _ = parse_metadata(entry.data)
    properties, key, payload = messages[0]
    answer: dict[str, Any] = {
        "messageId": f"{entry.position.ledger_id}:{entry.position.entry_id}",
        "publishTime": meta.publish_time,
        "key": None if key is None else json_text(key),
        "properties": {json_text(k): json_text(v) for k, v in properties.items()},
        "batchSize": len(messages),
        "payload": base64.b64encode(payload).decode(),
        "schema": None,
    }
    if not meta.HasField("schema_version"):
        return answer  # written without a schema (bytes)
    try:
        version = decode_version(meta.schema_version)
        stored = await registry.get(schema_id(topic), version)
    except SchemaNotFoundError as exc:  # deleted since, or a version that is not ours
        answer["decodeError"] = str(exc)
        return answer
    if stored.schema is None:
        answer["decodeError"] = f"schema version {version} was deleted"
        return answer
    answer["schema"] = {"version": version, "type": stored.schema.type}
    if not decodes(stored.schema):
        answer["decodeError"] = f"{stored.schema.type} payloads are not decoded"
        return answer
    try:
        answer["value"] = decode(stored.schema, payload)
    except UndecodableError as exc:
        answer["decodeError"] = str(exc)
    return answer
