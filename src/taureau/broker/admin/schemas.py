"""/admin/v2/schemas: a topic's schema versions over REST, with Pulsar's paths and JSON shapes.

A definition travels as text in "schema" (uploads) and "data" (answers); a KEY_VALUE schema's
definition is a JSON object {"key": ..., "value": ...} of its two sides, as pulsar-admin shows it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from fastapi import APIRouter, Body, Request

from taureau.broker.schemas import compatibility
from taureau.broker.schemas.model import (
    IncompatibleSchemaError,
    InvalidSchemaError,
    SchemaData,
    SchemaNotFoundError,
    StoredSchema,
    schema_id,
)
from taureau.common.names import TopicName

router = APIRouter(prefix="/admin/v2/schemas", tags=["schemas"])


def _topic(tenant: str, namespace: str, topic: str) -> TopicName:
    return TopicName.parse(f"persistent://{tenant}/{namespace}/{topic}")


def _schemas(request: Request):
    return request.app.state.service.schemas


def _answer(stored: StoredSchema) -> dict[str, Any]:
    assert stored.schema is not None
    schema = stored.schema
    if schema.type == "KEY_VALUE":
        key, value = compatibility.split_key_value(schema)
        data = json.dumps({"key": _text(key), "value": _text(value)})
    else:
        data = schema.data.decode("utf-8", errors="replace")
    return {"version": stored.version, "type": schema.type, "timestamp": stored.timestamp_ms,
            "data": data, "properties": schema.properties}


def _text(side: SchemaData) -> Any:
    try:
        return json.loads(side.data) if side.data else ""
    except ValueError:
        return side.data.decode("utf-8", errors="replace")


def _payload(body: Any) -> SchemaData:
    """A PostSchemaPayload: {"type": ..., "schema": ..., "properties": {...}}."""
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise ValueError('the body must be a JSON object with a "type" and a "schema"')
    definition = body.get("schema", "")
    properties = body.get("properties") or {}
    if not isinstance(properties, dict) or not all(isinstance(v, str) for v in properties.values()):
        raise ValueError('"properties" must map names to strings')
    kind = body["type"].upper()
    if kind == "KEY_VALUE":
        sides = json.loads(definition) if isinstance(definition, str) else definition
        if not isinstance(sides, dict) or "key" not in sides or "value" not in sides:
            raise InvalidSchemaError('a KEY_VALUE schema is {"key": ..., "value": ...}')
        data = b"".join(_side(sides[s]) for s in ("key", "value"))
    elif isinstance(definition, str):
        data = definition.encode()
    else:
        data = json.dumps(definition).encode()  # an object given inline
    schema = SchemaData(kind, data, {str(k): v for k, v in properties.items()})
    compatibility.validate(schema)
    return schema


def _side(definition: Any) -> bytes:
    raw = definition.encode() if isinstance(definition, str) else json.dumps(definition).encode()
    return struct.pack(">i", len(raw)) + raw


@router.get("/{tenant}/{namespace}/{topic}/schema")
async def get_schema(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    return _answer(await _schemas(request).registry.latest(schema_id(_topic(tenant, namespace, topic))))


@router.get("/{tenant}/{namespace}/{topic}/schema/{version}")
async def get_schema_version(request: Request, tenant: str, namespace: str, topic: str, version: int) -> dict:
    return _answer(await _schemas(request).registry.get(schema_id(_topic(tenant, namespace, topic)), version))


@router.get("/{tenant}/{namespace}/{topic}/schemas")
async def get_all_versions(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    live = await _schemas(request).registry.live(schema_id(_topic(tenant, namespace, topic)))
    return {"getSchemaResponses": [_answer(s) for s in live]}


@router.post("/{tenant}/{namespace}/{topic}/schema")
async def post_schema(request: Request, tenant: str, namespace: str, topic: str, body: Any = Body(...)) -> dict:
    name = _topic(tenant, namespace, topic)
    schemas = _schemas(request)
    version = await schemas.registry.add(schema_id(name), _payload(body), await schemas.strategy(name))
    return {"version": {"version": version}}


@router.delete("/{tenant}/{namespace}/{topic}/schema")
async def delete_schema(request: Request, tenant: str, namespace: str, topic: str) -> dict:
    return {"version": await _schemas(request).registry.delete(schema_id(_topic(tenant, namespace, topic)))}


@router.post("/{tenant}/{namespace}/{topic}/compatibility")
async def test_compatibility(request: Request, tenant: str, namespace: str, topic: str,
                             body: Any = Body(...)) -> dict:
    name = _topic(tenant, namespace, topic)
    schemas = _schemas(request)
    strategy = await schemas.strategy(name)
    schema = _payload(body)
    try:
        await schemas.registry.check(schema_id(name), schema, strategy)
        compatible = True
    except IncompatibleSchemaError as exc:
        if isinstance(exc, InvalidSchemaError):
            raise
        compatible = False
    return {"compatibility": compatible, "schemaCompatibilityStrategy": strategy.effective.value}


@router.post("/{tenant}/{namespace}/{topic}/version")
async def version_of(request: Request, tenant: str, namespace: str, topic: str, body: Any = Body(...)) -> dict:
    sid = schema_id(_topic(tenant, namespace, topic))
    version = await _schemas(request).registry.version_of(sid, _payload(body))
    if version is None:
        raise SchemaNotFoundError(f"no version of the schema of {sid} is this one")
    return {"version": version}
