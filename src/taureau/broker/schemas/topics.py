"""TopicSchemas: the registry seen from a topic, with its namespace's and its own policies.

What a producer or consumer that names a schema gets, as in Pulsar:
- a producer's schema is stored (or found) and its version goes back in PRODUCER_SUCCESS; a
  producer without one gets an empty version, or IncompatibleSchema on a topic that has a
  schema when the namespace enforces schema validation;
- a consumer's schema becomes the topic's if the topic is idle (no producer, no consumer,
  nothing stored) and has none; otherwise it must be able to read the topic's schema.
"""

from __future__ import annotations

from taureau.broker.resources import NamespacePolicies, Resources
from taureau.broker.schemas.compatibility import Strategy
from taureau.broker.schemas.model import (
    NOT_STORED,
    TYPE_NAMES,
    TYPE_NUMBERS,
    IncompatibleSchemaError,
    SchemaData,
    encode_version,
    schema_id,
)
from taureau.broker.schemas.registry import SchemaRegistry
from taureau.common.names import TopicName
from taureau.protocol import pb

TOPIC_STRATEGY = "schemaCompatibilityStrategy"  # the topic-level override, Pulsar's name


def from_wire(schema: pb.Schema) -> SchemaData:
    return SchemaData(TYPE_NAMES.get(schema.type, str(schema.type)), bytes(schema.schema_data),
                      {kv.key: kv.value for kv in schema.properties})


def to_wire(schema: SchemaData, name: str) -> pb.Schema:
    out = pb.Schema(name=name, schema_data=schema.data)
    out.type = TYPE_NUMBERS[schema.type]  # type: ignore[assignment]  # the enum's numbers are its values
    for key, value in schema.properties.items():
        out.properties.add(key=key, value=value)
    return out


class TopicSchemas:
    def __init__(self, registry: SchemaRegistry, resources: Resources) -> None:
        self.registry = registry
        self._resources = resources

    async def strategy(self, topic: TopicName, policies: NamespacePolicies | None = None) -> Strategy:
        """The topic's own strategy if set, else its namespace's (`policies`, when the caller
        has read them already)."""
        own = await self._resources.get_topic_policy(topic, TOPIC_STRATEGY)
        if own is not None:
            return Strategy.parse(own)
        if policies is None:
            policies = await self._resources.get_policies(topic.namespace_name)
        return Strategy.parse(policies.schema_compatibility_strategy)

    async def for_producer(self, topic: TopicName, schema: SchemaData | None,
                           policies: NamespacePolicies | None = None) -> bytes:
        """The schema version a producer writes with (b"": none)."""
        sid = schema_id(topic)
        if policies is None:
            policies = await self._resources.get_policies(topic.namespace_name)
        if schema is None or schema.type in NOT_STORED:
            if policies.schema_validation_enforced and await self.registry.live(sid):
                raise IncompatibleSchemaError(
                    f"topic {sid} has a schema and its namespace enforces schema validation: "
                    "a producer must send one"
                )
            return b""
        version = await self.registry.add(sid, schema, await self.strategy(topic, policies),
                                          allow_update=policies.is_allow_auto_update_schema)
        return encode_version(version)

    async def for_consumer(self, topic: TopicName, schema: SchemaData | None, topic_idle: bool) -> None:
        if schema is None or schema.type in NOT_STORED:
            return
        sid = schema_id(topic)
        strategy = await self.strategy(topic)
        if topic_idle and not await self.registry.live(sid):
            await self.registry.add(sid, schema, strategy)
            return
        await self.registry.check_reader(sid, schema, strategy)
