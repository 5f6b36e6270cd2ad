"""The schema registry, driven by the official Python client and over REST."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pulsar
import pytest
from pulsar.schema import AvroSchema, Float, Integer, JsonSchema, Record, String, StringSchema

VERSION_0, VERSION_1 = "\x00" * 8, "\x00" * 7 + "\x01"  # the client hands the 8 bytes back as a str


def _order(**extra):
    """A version of the record `Order` (Avro matches records by name: versions share it)."""
    return type("Order", (Record,), {"id": Integer(), "item": String(), **extra})


Order = _order()
# A new field with a default (null): BACKWARD and FORWARD compatible. The client writes a
# default only when told (required_default); a plain optional field has none.
OrderWithPrice = _order(price=Float(required_default=True))
# A new field with no default: data written before has no value for it.
OrderWithRequiredNote = _order(note=String(required=True))


def _rest(standalone, topic: str) -> str:
    return f"{standalone.admin_url}/admin/v2/schemas/{topic.split('://', 1)[1]}"


def _refused(client, topic: str, schema) -> str:
    with pytest.raises(pulsar.exceptions.IncompatibleSchema) as refused:
        client.create_producer(topic, schema=schema)
    return str(refused.value)


def test_a_json_producer_on_a_string_topic_is_refused(client, standalone, topic):
    strings = client.create_producer(topic, schema=StringSchema())
    strings.send("hello")
    _refused(client, topic, JsonSchema(Order))
    latest = httpx.get(f"{_rest(standalone, topic)}/schema").json()
    assert latest["type"] == "STRING" and latest["version"] == 0
    strings.send("still serving")  # the first producer is not disturbed


def test_avro_messages_carry_the_version_and_decode_for_consumers(client, standalone, topic):
    consumer = client.subscribe(topic, "s", schema=AvroSchema(Order))
    producer = client.create_producer(topic, schema=AvroSchema(Order))
    producer.send(Order(id=1, item="tea"))
    message = consumer.receive(10_000)
    assert message.value().item == "tea"
    assert message.schema_version() == VERSION_0


def test_a_consumer_reads_older_versions_with_the_writers_schema(client, topic):
    """The consumer fetches the schema each message was written with (GET_SCHEMA by version)
    and resolves it to its own: an old message lacks `price`, a new one has it."""
    client.create_producer(topic, schema=AvroSchema(Order)).send(Order(id=1, item="tea"))
    consumer = client.subscribe(topic, "s", schema=AvroSchema(OrderWithPrice),
                                initial_position=pulsar.InitialPosition.Earliest)
    client.create_producer(topic, schema=AvroSchema(OrderWithPrice)).send(OrderWithPrice(id=2, item="cake", price=2.5))
    old, new = consumer.receive(10_000), consumer.receive(10_000)
    assert (old.schema_version(), new.schema_version()) == (VERSION_0, VERSION_1)
    assert (old.value().item, old.value().price) == ("tea", None)
    assert (new.value().item, new.value().price) == ("cake", 2.5)


def test_backward_compatible_evolution_gets_a_new_version(client, standalone, topic):
    client.create_producer(topic, schema=AvroSchema(Order)).send(Order(id=1, item="tea"))
    newer = client.create_producer(topic, schema=AvroSchema(OrderWithPrice))
    newer.send(OrderWithPrice(id=2, item="cake", price=2.5))
    versions = httpx.get(f"{_rest(standalone, topic)}/schemas").json()["getSchemaResponses"]
    assert [v["version"] for v in versions] == [0, 1]
    again = client.create_producer(topic, schema=AvroSchema(Order))  # an old version is found, not added
    again.send(Order(id=3, item="tea"))
    assert len(httpx.get(f"{_rest(standalone, topic)}/schemas").json()["getSchemaResponses"]) == 2


def test_a_required_new_field_is_refused_under_the_default_full_strategy(client, standalone, topic):
    client.create_producer(topic, schema=AvroSchema(Order))
    reason = _refused(client, topic, AvroSchema(OrderWithRequiredNote))
    assert "IncompatibleSchema" in reason
    assert len(httpx.get(f"{_rest(standalone, topic)}/schemas").json()["getSchemaResponses"]) == 1


def test_always_compatible_namespace_strategy_lets_the_type_change(client, standalone):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/anything-goes"
    assert httpx.put(ns).status_code == 204
    assert httpx.post(f"{ns}/schemaCompatibilityStrategy", json="ALWAYS_COMPATIBLE").status_code == 204
    assert httpx.get(f"{ns}/schemaCompatibilityStrategy").json() == "ALWAYS_COMPATIBLE"
    topic = "persistent://public/anything-goes/t"
    client.create_producer(topic, schema=StringSchema())
    client.create_producer(topic, schema=JsonSchema(Order))
    versions = httpx.get(f"{standalone.admin_url}/admin/v2/schemas/public/anything-goes/t/schemas").json()
    assert [v["type"] for v in versions["getSchemaResponses"]] == ["STRING", "JSON"]


def test_a_topic_strategy_overrides_its_namespace(client, standalone, topic):
    path = f"{standalone.admin_url}/admin/v2/{topic.replace('://', '/')}/schemaCompatibilityStrategy"
    client.create_producer(topic, schema=AvroSchema(Order))
    assert httpx.put(path, json="ALWAYS_INCOMPATIBLE").status_code == 204
    assert httpx.get(path).json() == "ALWAYS_INCOMPATIBLE"
    _refused(client, topic, AvroSchema(OrderWithPrice))
    assert httpx.delete(path).status_code == 204
    client.create_producer(topic, schema=AvroSchema(OrderWithPrice))


def test_enforced_validation_refuses_a_producer_without_schema(client, standalone):
    ns = f"{standalone.admin_url}/admin/v2/namespaces/public/enforced"
    assert httpx.put(ns).status_code == 204
    assert httpx.post(f"{ns}/schemaValidationEnforced", json=True).status_code == 204
    topic = "persistent://public/enforced/t"
    client.create_producer(topic, schema=StringSchema())
    with pytest.raises(pulsar.exceptions.IncompatibleSchema):
        client.create_producer(topic)  # bytes: no schema sent
    client.create_producer("persistent://public/enforced/no-schema-yet")  # nothing to enforce


def test_a_consumer_schema_becomes_an_idle_topics_schema_and_must_fit_later(client, standalone, topic):
    client.subscribe(topic, "first", schema=AvroSchema(Order))
    assert httpx.get(f"{_rest(standalone, topic)}/schema").json()["type"] == "AVRO"
    with pytest.raises(pulsar.exceptions.IncompatibleSchema):
        client.subscribe(topic, "second", schema=StringSchema())


def test_a_consumer_schema_on_a_topic_with_data_but_no_schema_is_refused(client, topic):
    client.create_producer(topic).send(b"raw bytes")
    with pytest.raises(pulsar.exceptions.IncompatibleSchema):
        client.subscribe(topic, "typed", schema=AvroSchema(Order))
    raw = client.subscribe(topic, "raw", initial_position=pulsar.InitialPosition.Earliest)
    assert raw.receive(10_000).data() == b"raw bytes"


def test_partitions_share_their_topics_schema(client, standalone, topic):
    base = topic.split("://", 1)[1]
    assert httpx.put(f"{standalone.admin_url}/admin/v2/persistent/{base}/partitions", json=3).status_code == 204
    producer = client.create_producer(topic, schema=AvroSchema(Order))
    for i in range(6):
        producer.send(Order(id=i, item="x"), partition_key=str(i))
    versions = httpx.get(f"{_rest(standalone, topic)}/schemas").json()["getSchemaResponses"]
    assert len(versions) == 1
    _refused(client, topic, StringSchema())


def test_rest_upload_get_compatibility_and_delete(client, standalone, topic):
    url = _rest(standalone, topic)
    order = AvroSchema(Order).schema_info().schema()
    posted = httpx.post(f"{url}/schema", json={"type": "AVRO", "schema": order, "properties": {"team": "ops"}})
    assert posted.status_code == 200 and posted.json() == {"version": {"version": 0}}
    got = httpx.get(f"{url}/schema/0").json()
    assert got["type"] == "AVRO" and got["properties"] == {"team": "ops"} and json.loads(got["data"])["name"] == "Order"
    required = AvroSchema(OrderWithRequiredNote).schema_info().schema()
    check = httpx.post(f"{url}/compatibility", json={"type": "AVRO", "schema": required}).json()
    assert check == {"compatibility": False, "schemaCompatibilityStrategy": "FULL"}
    assert httpx.post(f"{url}/version", json={"type": "AVRO", "schema": order}).json() == {"version": 0}
    assert httpx.post(f"{url}/version", json={"type": "AVRO", "schema": required}).status_code == 404
    assert httpx.delete(f"{url}/schema").json() == {"version": 1}
    assert httpx.get(f"{url}/schema").status_code == 404
    # After a delete the history starts again: the incompatible schema is now accepted.
    client.create_producer(topic, schema=AvroSchema(OrderWithRequiredNote))
    assert httpx.get(f"{url}/schema").json()["version"] == 2


@pytest.mark.parametrize(
    "body, status",
    [
        ({"type": "AVRO", "schema": "{not json"}, 422),
        ({"type": "AVRO", "schema": json.dumps({"type": "record", "name": "R", "fields": [{"name": "x"}]})}, 422),
        ({"type": "AVRO", "schema": json.dumps({"type": "record", "name": "R", "fields": [{"name": "x", "type": "Missing"}]})}, 422),
        ({"type": "NO_SUCH_TYPE", "schema": ""}, 422),
        ({"type": "JSON", "schema": "x" * (600 * 1024)}, 422),
        ({"schema": "{}"}, 400),
        ("just a string", 400),
    ],
    ids=["not-json", "field-without-type", "unknown-named-type", "unknown-type", "too-large", "no-type", "not-an-object"],
)
def test_rest_refuses_bad_schemas_and_stores_nothing(client, standalone, topic, body, status):
    url = _rest(standalone, topic)
    assert httpx.post(f"{url}/schema", json=body).status_code == status
    assert httpx.get(f"{url}/schema").status_code == 404
    producer = client.create_producer(topic, schema=StringSchema())  # the topic still takes a schema
    producer.send("ok")


def test_a_bad_schema_from_a_raw_client_is_refused_and_the_broker_keeps_serving(standalone, topic):
    from taureau.protocol import pb
    from tests.e2e.raw import RawClient, T, command

    raw = RawClient(standalone.broker_port)
    bad = pb.Schema(name="x", schema_data=b"\xff{", type=pb.Schema.Avro)
    reply = raw.producer(topic, schema=bad)
    assert reply.type == T.ERROR and reply.error.error == pb.IncompatibleSchema
    good = raw.producer(topic, producer_id=2, request_id=3)
    assert good.type == T.PRODUCER_SUCCESS and good.producer_success.HasField("schema_version")
    assert good.producer_success.schema_version == b""  # no schema: an empty version, as Pulsar sends
    raw.send(command(T.GET_SCHEMA, "getSchema", topic=topic, request_id=2, schema_version=b"\x00\x01"))
    missing = raw.expect(T.GET_SCHEMA_RESPONSE)
    assert missing.getSchemaResponse.error_code == pb.TopicNotFound
    raw.close()
    c = pulsar.Client(standalone.service_url)  # still serving
    try:
        c.create_producer(topic, schema=StringSchema()).send("fine")
    finally:
        c.close()


def test_schemas_survive_a_restart_and_go_with_a_deleted_topic(standalone, topic):
    client = pulsar.Client(standalone.service_url)
    client.create_producer(topic, schema=AvroSchema(Order)).send(Order(id=1, item="tea"))
    client.close()
    assert standalone.stop() == 0
    standalone.restart()
    url = _rest(standalone, topic)
    assert httpx.get(f"{url}/schema").json()["version"] == 0
    client = pulsar.Client(standalone.service_url)
    try:
        with pytest.raises(pulsar.exceptions.IncompatibleSchema):
            client.create_producer(topic, schema=StringSchema())
    finally:
        client.close()
    base = topic.split("://", 1)[1]
    assert httpx.delete(f"{standalone.admin_url}/admin/v2/persistent/{base}").status_code == 204
    assert httpx.get(f"{url}/schema").status_code == 404


def test_cli_schemas_verbs(standalone, topic, tmp_path):
    definition = tmp_path / "schema.json"
    definition.write_text(json.dumps({"type": "STRING", "schema": "", "properties": {}}))
    base = [sys.executable, "-m", "taureau.cli.main", "admin", "--admin-url", standalone.admin_url, "schemas"]
    upload = subprocess.run([*base, "upload", topic, "--filename", str(definition)], capture_output=True, text=True)
    assert upload.returncode == 0, upload.stderr
    got = subprocess.run([*base, "get", topic], capture_output=True, text=True)
    assert got.returncode == 0 and json.loads(got.stdout)["type"] == "STRING"
    missing = subprocess.run([*base, "upload", topic, "--filename", str(tmp_path / "nope.json")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "nope.json" in missing.stderr
    deleted = subprocess.run([*base, "delete", topic], capture_output=True, text=True)
    assert deleted.returncode == 0
    gone = subprocess.run([*base, "get", topic], capture_output=True, text=True)
    assert gone.returncode != 0 and "Traceback" not in gone.stderr
